"""Enqueue: what ``submit`` and ``submit_many`` store is what workers and ``record_from_fields`` read, and
a submit is whole jobs or nothing, whatever Redis or the connection does in between."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from genq.redis_server import EmbeddedRedis
from producers import Producer
from producers import producer as producer_module
from schemas import JOB_REQUEST, JobStatus
from schemas import layout as L
from tests.conftest import AVATAR, LIPSYNC, SCRATCH_DB, Services, Sim

pytestmark = pytest.mark.integration

QUEUES = ("syncso", "aistudios")


def lipsync(i: int, **fields: Any) -> dict[str, Any]:
    return {**LIPSYNC, "video": f"https://x.test/v{i}.mp4", **fields}


@pytest.fixture
def isolated(scratch: redis.Redis) -> redis.Redis:
    """A database of the session Redis that no worker consumes, empty before and after the test."""
    return scratch


def queued(client: redis.Redis, queue: str) -> list[str]:
    """The job ids of ``queue``'s messages, in the order workers take them."""
    raw = client.lrange(queue, 0, -1)
    return [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in reversed(raw)]


def stored(client: redis.Redis) -> set[str]:
    return {L.text(key).removeprefix(L.job_key("")) for key in client.scan_iter(L.job_key("*"))}


def messages_and_records(client: redis.Redis, queues: tuple[str, ...] = QUEUES) -> tuple[list[str], set[str]]:
    return [i for q in queues for i in queued(client, q)], stored(client)


def test_many_jobs_submitted_at_once_are_all_run_by_the_worker(
    producer: Producer, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer_module, "_CHUNK", 7)  # several script calls, each with both kinds
    requests = [AVATAR if i % 4 == 3 else lipsync(i, tenant=f"t{i % 3}") for i in range(32)]
    ids = producer.submit_many(requests)

    assert len(set(ids)) == len(ids) == 32
    records = [producer.wait(job_id, timeout_s=60) for job_id in ids]
    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * 32, [r.error for r in records]
    assert [r.kind for r in records] == [r["kind"] for r in requests]
    assert [r.tenant for r in records] == [r.get("tenant") for r in requests]


def test_the_record_is_new_job_fields_and_messages_keep_the_order(
    isolated: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer_module, "_CHUNK", 4)
    producer = Producer(client=isolated)
    acme, b = {"tenant": "acme"}, {**AVATAR, "tenant": "b"}
    requests = [lipsync(0), AVATAR, lipsync(1, **acme), lipsync(2, **acme), b, lipsync(3), lipsync(4, **acme),
                AVATAR, lipsync(5)]  # fmt: skip
    ids = producer.submit_many(requests)
    ids.append(producer.submit(lipsync(6, tenant="one")))
    ids.append(producer.submit(lipsync(7), idempotency_key="order-1"))
    requests += [lipsync(6, tenant="one"), lipsync(7)]

    for job_id, request in zip(ids, requests, strict=True):
        raw = {L.text(k): L.text(v) for k, v in isolated.hgetall(L.job_key(job_id)).items()}
        parsed = JOB_REQUEST.validate_python(request)
        fields = L.new_job_fields(
            job_id, parsed.model_dump_json(), parsed.kind, parsed.tenant, raw[L.F_CREATED]
        )
        assert raw == fields
        record = L.record_from_fields(job_id, isolated.hgetall(L.job_key(job_id)))
        assert (record.request, record.status, record.tenant) == (parsed, JobStatus.QUEUED, parsed.tenant)
    assert queued(isolated, "syncso") == [
        i for i, r in zip(ids, requests, strict=True) if r["kind"] == "lipsync"
    ]
    assert queued(isolated, "aistudios") == [
        i for i, r in zip(ids, requests, strict=True) if r["kind"] == "avatar"
    ]
    assert producer.submit(lipsync(8), idempotency_key="order-1") == ids[-1]  # the key's job, nothing more
    assert len(queued(isolated, "syncso")) == 8


def test_a_redis_error_leaves_no_record_and_no_message(isolated: redis.Redis) -> None:
    producer = Producer(client=isolated)
    isolated.set("aistudios", "not a queue")  # LPUSH to it fails with WRONGTYPE
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        producer.submit_many([lipsync(0), lipsync(1), AVATAR, lipsync(2)])
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        producer.submit(AVATAR)
    assert messages_and_records(isolated, ("syncso",)) == ([], set())
    assert isolated.get("aistudios") == b"not a queue"


def test_a_taken_job_id_refuses_the_call_and_nothing_is_written(
    isolated: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = Producer(client=isolated)
    ids = [f"01a22f80d4266f1507cd7f8cf8e{i}" for i in range(3)]
    monkeypatch.setattr(producer_module, "_new_job_ids", lambda count: ids[:count])
    isolated.set(L.job_key(ids[2]), "not a job")  # 64 random bits did collide
    with pytest.raises(redis.ResponseError, match="taken"):
        producer.submit_many([lipsync(0), lipsync(1), lipsync(2)])
    assert (queued(isolated, "syncso"), stored(isolated)) == ([], {ids[2]})


def test_threads_submitting_at_once_each_store_their_jobs(isolated: redis.Redis) -> None:
    producer = Producer(client=isolated)  # one thread at a time uses the connection it keeps
    ids: list[str] = []

    def submit(n: int) -> None:
        for i in range(40):
            ids.append(producer.submit(lipsync(n * 100 + i)))
        ids.extend(producer.submit_many([lipsync(i) for i in range(20)]))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    messages, records = messages_and_records(isolated)
    assert len(set(ids)) == 6 * 60
    assert sorted(messages) == sorted(records) == sorted(ids)


def test_a_pool_of_one_connection_is_enough(own_redis: EmbeddedRedis) -> None:
    producer = Producer(client=redis.Redis(port=own_redis.port, max_connections=1))
    job_id = producer.submit(LIPSYNC)  # a new Redis: NOSCRIPT, then loaded on the same connection
    assert producer.get(job_id).status is JobStatus.QUEUED  # the submit kept no connection for itself
    producer.close()


def test_a_redis_without_the_script_is_given_it_and_runs_each_call_once(
    own_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer_module, "_CHUNK", 10)
    producer = Producer(own_redis.url)
    ids = producer.submit_many([lipsync(i) for i in range(25)])  # a new Redis: NOSCRIPT, then loaded
    producer.redis.script_flush()  # as after a restart
    ids += producer.submit_many([lipsync(i) for i in range(25)])
    producer.redis.script_flush()
    ids.append(producer.submit(AVATAR))

    messages, records = messages_and_records(producer.redis)
    assert len(set(ids)) == 51
    assert sorted(messages) == sorted(records) == sorted(ids)
    producer.close()


class Proxy:
    """A TCP proxy in front of Redis that breaks a connection when armed: ``cut_after(n)`` forwards n more
    bytes towards Redis and closes (a request cut in the middle), ``drop_reply()`` closes instead of
    forwarding what Redis sends next (a command that ran, whose answer is lost). With ``stay_down``, it
    then closes every connection and refuses new ones (Redis is unreachable)."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.request_bytes_left: int | None = None
        self.reply_to_drop = False
        self.stay_down = False
        self.broken = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, n: int, *, stay_down: bool = False) -> None:
        with self.lock:
            self.request_bytes_left, self.stay_down = n, stay_down

    def drop_reply(self) -> None:
        with self.lock:
            self.reply_to_drop = True

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.broken.is_set() and self.stay_down:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.redis_port))
            self.sockets += (client, upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, to_redis: bool) -> None:
        try:
            while data := source.recv(65536):
                forward, keep_going = self._filter(data, to_redis)
                sink.sendall(forward)
                if not keep_going:
                    self.broken.set()
                    break
        except OSError:
            pass
        for end in (*(self.sockets if self.stay_down else ()), source, sink):  # the others first
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def _filter(self, data: bytes, to_redis: bool) -> tuple[bytes, bool]:
        with self.lock:
            if to_redis and self.request_bytes_left is not None:
                if len(data) >= self.request_bytes_left:
                    forward, self.request_bytes_left = data[: self.request_bytes_left], None
                    return forward, False
                self.request_bytes_left -= len(data)
            if not to_redis and self.reply_to_drop:
                self.reply_to_drop = False
                return b"", False
        return data, True


@pytest.fixture
def proxy(services: Services) -> Iterator[Proxy]:
    p = Proxy(services.redis.port)
    yield p
    p.close()


def through(proxy: Proxy, **options: Any) -> Producer:
    producer = Producer(client=redis.Redis(port=proxy.port, db=SCRATCH_DB, **options))
    producer.submit(LIPSYNC)  # the script is loaded and a connection is open before anything breaks
    producer.redis.flushdb()
    return producer


def test_a_submit_cut_off_from_redis_leaves_whole_jobs_only(
    isolated: redis.Redis, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer_module, "_CHUNK", 10)
    producer = through(proxy, retry=Retry(NoBackoff(), 0))
    proxy.cut_after(40_000, stay_down=True)  # a script call of 10 jobs is about 16 kB: the third is cut
    with pytest.raises(redis.ConnectionError):
        producer.submit_many([lipsync(i) for i in range(50)])

    assert proxy.broken.is_set()
    messages, records = messages_and_records(isolated)
    assert sorted(messages) == sorted(records)
    assert len(records) == 20


@pytest.mark.parametrize("chunk", [500, 10])
def test_a_call_cut_or_answered_into_a_broken_connection_is_sent_again_and_runs_once(
    isolated: redis.Redis, proxy: Proxy, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(producer_module, "_CHUNK", chunk)
    producer = through(proxy)  # redis-py's default: a command whose connection broke is sent again
    ids = []
    for arm in (lambda: proxy.cut_after(25_000), proxy.drop_reply):
        arm()
        ids += producer.submit_many([lipsync(i) for i in range(30)])
        assert proxy.broken.is_set()
        proxy.broken.clear()
    proxy.drop_reply()
    ids.append(producer.submit(AVATAR))
    assert proxy.broken.is_set()

    messages, records = messages_and_records(isolated)
    assert len(set(ids)) == 61
    assert sorted(messages) == sorted(records) == sorted(ids)
