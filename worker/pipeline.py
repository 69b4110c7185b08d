"""Pipelines: a job whose steps are jobs of other kinds (``schemas/pipeline.py`` has the request).

A pipeline moves forward by the same mechanism as every job: its step graph (``PipelineGraph``, worked out
from the request) says what follows a done run, and one Lua step (``advance.lua``) records it and pushes
what follows. Each run of a step (a *node*: ``dub[1]``) is a run of one task, ``genq.pipeline``:

1. Its first run checks what it waits for (``Shape.needs``; every one has ended, or it would not have
   been pushed). If that did not succeed as its join asks, the node is ``skipped``. Otherwise it makes the
   step's job: the step's request with each reference replaced by the output it names (a file store's
   path, or ``output:s3://…`` presigned by each run of the job), and in the same Lua step
   (``pipeline_step.lua``) the job's start message and a *notice* (``layout.PIPELINE_NOTIFY_KEY``): the
   node's next run, which whatever ends the job pushes in the step that ends it. The node then waits
   (``Awaiting``), holding no worker.
2. Its next run finds the job ended and records how (``StepOutcome``, ``data["step:<node>"]``) and is done.
3. The last run, ``end``, joins every node: the pipeline succeeds with the outputs of its leaf steps'
   runs when its ``join`` holds over them, and fails naming what did not succeed otherwise.

With ``on_failure: fail_fast`` a node whose job did not succeed ends the pipeline as soon as its join can
no longer hold: the pipeline fails, and every step's job that has not ended is cancelled (one already at a
provider is followed to its end, as any cancelled job's). A step's job id is derived from the pipeline's,
the node and how often the node was replayed, so a run made again after a crash finds the job it made.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from pydantic import ValidationError

from schemas import JobError, JobRecord, JobStatus, StageStatus
from schemas import layout as L
from schemas.pipeline import (
    END,
    GENERATIONS,
    OUTCOME_PREFIX,
    PipelineRequest,
    Shape,
    node_key,
    parse_node,
    replace_at,
)
from schemas.records import StepOutcome
from schemas.requests import MEMBER_REQUEST
from schemas.wire import task_message
from storage.files import local_path
from worker.app import app
from worker.graph import Graph, Next, Run, Step, Then
from worker.handoff import HANDED
from worker.limits import Gate
from worker.outcomes import Awaiting, Done, Stop
from worker.providers.errors import JobRejected
from worker.spend import micros
from worker.stage import Stage
from worker.store import JobStore

log = logging.getLogger(__name__)

TASK = "genq.pipeline"
KIND = "pipeline"


def shape_of(job: JobRecord) -> Shape:
    assert isinstance(job.request, PipelineRequest)
    return job.request.shape()


def step_job_id(pipeline_id: str, key: str, generation: int) -> str:
    """The id of a node's job: the pipeline's time prefix (ids sort by submission) and a digest of the
    pipeline, the node and its replays, so a run made again finds the job it made."""
    digest = hashlib.sha256(f"{pipeline_id}:{key}:{generation}".encode()).hexdigest()
    return pipeline_id[:12] + digest[:16]


class PipelineGraph(Graph):
    """A pipeline's step graph: one step per step of its request, each run per branch of its fan, and
    ``end`` after all of them. Every run's state key is its node (``dub[1]``)."""

    def __init__(self) -> None:
        super().__init__(KIND, ())

    @staticmethod
    def step_named(name: str) -> Step:
        return Step(name, TASK, keyed=True)

    def applying(self, job: JobRecord) -> list[Step]:
        return [self.step_named(name) for name in shape_of(job).order] + [self.step_named(END)]

    def fans_out_after(self, job: JobRecord, name: str) -> bool:
        return False  # a fan's width is in the request

    def first(self, job: JobRecord) -> list[Run]:
        """The runs due (a replayed pipeline keeps the runs that succeeded)."""
        return self.frontier(job)

    def after(self, job: JobRecord, name: str, branch: int | None) -> Next:
        shape = shape_of(job)
        every = tuple(shape.all_nodes())
        if name == END:
            return Next(join=every, end=True)
        key = node_key(name, branch)
        more: list[Then] = []
        for dependent in shape.dependents(name):
            for b in shape.branches(dependent):
                needs = shape.needs(dependent, b)
                if any(n.key == key for n in needs):
                    more.append(Then((Run(self.step_named(dependent), b),), tuple(n.key for n in needs)))
        return Next(runs=(Run(self.step_named(END)),), join=every, more=tuple(more))

    def frontier(self, job: JobRecord) -> list[Run]:
        shape = shape_of(job)
        done = {key for key, state in job.stages.items() if state.status is StageStatus.DONE}
        runs = [
            Run(self.step_named(name), b)
            for name in shape.order
            for b in shape.branches(name)
            if node_key(name, b) not in done and all(n.key in done for n in shape.needs(name, b))
        ]
        if END not in done and all(key in done for key in shape.all_nodes()):
            runs.append(Run(self.step_named(END)))
        return runs


GRAPH = PipelineGraph()


class PipelineStage(Stage):
    """The task of every run of a pipeline: its argument after the pipeline's id is the node."""

    abstract = True
    stage = KIND

    @classmethod
    def branch_in(cls, args: Any) -> int | None:
        return parse_node(str(args[1]))[1] if len(args) > 1 else None

    @classmethod
    def run_state(cls, args: Any) -> str:
        return str(args[1]) if len(args) > 1 else END

    @property
    def step_name(self) -> str:
        return parse_node(self.state_key)[0]

    @property
    def provider(self) -> str:
        return KIND

    def run_key(self, job_id: str) -> str:
        return f"{job_id}:{self.name}:{self.state_key}"

    def on_failed(self, job_id: str, error: JobError) -> None:
        cancel_steps(self.ctx.store, job_id)


def cancel_steps(store: JobStore, pipeline_id: str) -> list[str]:
    """Cancel every step's job of the pipeline that has not ended; return their ids."""
    try:
        record = store.get(pipeline_id)
    except LookupError:
        return []
    cancelled = []
    for job_id in record.provider_ids.values():
        if store.transition(job_id, JobStatus.CANCELLED) in (JobStatus.QUEUED, JobStatus.RUNNING):
            cancelled.append(job_id)
    return cancelled


@app.task(bind=True, base=PipelineStage, name=TASK)
def pipeline_step(self: PipelineStage, job_id: str, node: str = END) -> str:
    return self.perform(job_id, lambda job, gate: Node(self, job, node).run(gate))


class PipelineFailed(JobRejected):
    """The pipeline's join can no longer hold (or did not, at its end)."""


class Node:
    """One run of a pipeline's node (see the module's doc)."""

    def __init__(self, task: PipelineStage, job: JobRecord, key: str) -> None:
        assert isinstance(job.request, PipelineRequest)
        self.task, self.job, self.key, self.request = task, job, key, job.request
        self.shape = job.request.shape()
        self.store = task.ctx.store

    def run(self, gate: Gate) -> Done:
        if self.key == END:
            return self.end()
        recorded = self.job.step_outcome(self.key)
        if recorded is not None:  # recorded by a run that died before it advanced
            return Done(detail=_said(recorded))
        child = self.job.provider_ids.get(self.key)
        if child is None:
            skipped = self.why_skipped()
            if skipped is not None:
                return self.ended(StepOutcome(status="skipped", reason=skipped))
            try:
                made = self.member()
            except _HandOff as exc:
                error = JobError(
                    stage=self.key, message=str(exc), provider="genq", code="genq_pipeline_input"
                )
                return self.ended(StepOutcome(status="failed", error=error))
            child = step_job_id(self.job.id, self.key, self.generation)
            answer = self.make(child, made)
        else:
            answer = self.make(child, None)
        said = answer[0]
        if said in ("created", "waiting"):
            raise Awaiting(f"waiting for job {child}")
        if said == "stopped":
            raise Stop(f"the pipeline is {answer[1]}")
        if said == "missing":  # a made job whose record is gone (it ended long ago and expired)
            error = JobError(stage=self.key, message=f"job {child} has no record", provider="genq")
            return self.ended(StepOutcome(status="failed", job=child, error=error))
        return self.ended(self.outcome(child))

    @property
    def generation(self) -> int:
        return int(self.job.data.get(GENERATIONS, {}).get(self.key, 0))

    def why_skipped(self) -> str | None:
        """Why this node does not run, if it does not: what it takes did not succeed, or too few of what
        it waits for (its step's join)."""
        name, branch = parse_node(self.key)
        join = self.request.steps[name].join
        failed_required, held, succeeded = [], [], 0
        for need in self.shape.needs(name, branch):
            outcome = self.job.step_outcome(need.key)
            ok = outcome is not None and outcome.status == "succeeded"
            if need.required and not ok:
                failed_required.append(need.key)
            elif not need.required:
                held.append(need.key)
                succeeded += ok
        if failed_required:
            return f"it takes the output of {', '.join(failed_required)}, which did not succeed"
        wanted = len(held) if join is None or join == "all" else join.at_least
        if succeeded < wanted:
            return f"{succeeded} of {len(held)} runs it waits for succeeded; its join needs {wanted}"
        return None

    def member(self) -> tuple[str, str, dict[str, str]]:
        """(kind, request JSON, inputs handed on) of this node's job."""
        name, branch = parse_node(self.key)
        request = self.request.member(name, branch)
        handed: dict[str, str] = {}
        for ref in self.shape.refs[name]:
            same_fan = (
                self.shape.fan[ref.step] is not None and self.shape.fan[ref.step] == self.shape.fan[name]
            )
            dep = node_key(ref.step, branch if same_fan else None)
            outcome = self.job.step_outcome(dep)
            outputs = outcome.outputs if outcome is not None else []
            if ref.output >= len(outputs):
                raise _HandOff(
                    f"{ref.path}: {dep} gave {len(outputs)} output(s); output {ref.output} was asked for"
                )
            output = outputs[ref.output]
            if output.store_url and output.store_url.startswith("s3://"):
                handed_on = "output:" + output.store_url
            elif output.store_url:
                handed_on = str(local_path(output.store_url))
            else:
                handed_on = output.path
            replace_at(request, ref.path, handed_on)
            handed[ref.path] = dep
        try:
            parsed = MEMBER_REQUEST.validate_python(request)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
            )
            raise _HandOff(problems) from None
        return parsed.kind, parsed.model_dump_json(), handed

    def make(self, child: str, made: tuple[str, str, dict[str, str]] | None) -> list[str]:
        """Make the node's job (``made``) with its notice, or wait for it again (``None``)."""
        queue, message = self.task.again((self.job.id, self.key))
        notice = json.dumps({"pipeline": self.job.id, "queue": queue, "message": message})
        if made is None:
            return self.store.step_job(self.job.id, self.key, child, notice)
        kind, request_json, handed = made
        child_queue = L.QUEUE_FOR_KIND[kind]
        root = self.task.request.root_id or self.task.request.id
        start = task_message(L.START_TASK, [child], child_queue, root_id=root, parent_id=self.task.request.id)
        fields = L.new_job_fields(child, request_json, kind, self.request.tenant, L.now_iso())
        fields[L.F_PARENT] = self.job.id
        if handed:
            fields[L.DATA_PREFIX + HANDED] = json.dumps(handed)
        return self.store.step_job(self.job.id, self.key, child, notice, made=(child_queue, start, fields))

    def outcome(self, child: str) -> StepOutcome:
        record = self.store.get(child)
        return StepOutcome(status=record.status.value, job=child, outputs=record.outputs, error=record.error,
                           cost_usd=record.cost_usd)  # fmt: skip

    def ended(self, outcome: StepOutcome) -> Done:
        """Record how this node ended; with ``fail_fast``, end the pipeline if its join can no longer
        hold (the record is read again after this write, so of two nodes failing at once the later one
        sees both)."""
        self.store.set_data(self.job.id, OUTCOME_PREFIX + self.key, outcome.model_dump(mode="json"))
        if outcome.status != "succeeded" and self.request.on_failure == "fail_fast":
            job = self.store.get(self.job.id)
            if not can_succeed(job, self.shape):
                raise PipelineFailed(
                    failure_message(job, self.shape), provider="genq", code="genq_pipeline_failed"
                )
        return Done(detail=_said(outcome))

    def end(self) -> Done:
        costs = [
            o.cost_usd for key in self.shape.all_nodes() if (o := self.job.step_outcome(key)) and o.cost_usd
        ]
        if costs:  # the pipeline's cost: its steps' jobs', whether it succeeds or not
            self.store.redis.hset(L.job_key(self.job.id), L.F_SPEND_COST, micros(sum(costs)))
        leaves = [key for step in self.shape.leaves() for key in self.shape.nodes(step)]
        outcomes = {key: self.job.step_outcome(key) for key in leaves}
        good = [key for key, o in outcomes.items() if o is not None and o.status == "succeeded"]
        if not joined(self.request.join, len(good), len(leaves)):
            raise PipelineFailed(
                failure_message(self.job, self.shape), provider="genq", code="genq_pipeline_failed"
            )
        outputs = [output for key in good for output in outcomes[key].outputs]  # type: ignore[union-attr]
        return Done(outputs=outputs, detail=f"{len(good)} of {len(leaves)} final runs succeeded")


class _HandOff(Exception):
    """An output could not be handed on to a step's job."""


def joined(join: Any, succeeded: int, total: int) -> bool:
    wanted = total if join is None or join == "all" else join.at_least
    return succeeded >= wanted


def can_succeed(job: JobRecord, shape: Shape | None = None) -> bool:
    """Whether the pipeline's join can still hold, given the outcomes recorded so far: a node can still
    succeed unless it ended otherwise, or what it takes cannot, or too few of what it joins can."""
    assert isinstance(job.request, PipelineRequest)
    shape = shape or job.request.shape()
    possible: dict[str, bool] = {}
    for name in shape.order:
        join = job.request.steps[name].join
        for branch in shape.branches(name):
            key = node_key(name, branch)
            outcome = job.step_outcome(key)
            if outcome is not None:
                possible[key] = outcome.status == "succeeded"
                continue
            needs = shape.needs(name, branch)
            held = [n for n in needs if not n.required]
            ok = all(possible[n.key] for n in needs if n.required)
            possible[key] = ok and joined(join, sum(possible[n.key] for n in held), len(held))
    leaves = [key for step in shape.leaves() for key in shape.nodes(step)]
    return joined(job.request.join, sum(possible[key] for key in leaves), len(leaves))


def failure_message(job: JobRecord, shape: Shape | None = None) -> str:
    """Which runs did not succeed, and why: ``dub[1] failed (sync.so generation_failed: …); score[1]
    skipped``, with how many final runs succeeded against what the join needs."""
    assert isinstance(job.request, PipelineRequest)
    shape = shape or job.request.shape()
    parts = []
    for key in shape.all_nodes():
        outcome = job.step_outcome(key)
        if outcome is None or outcome.status == "succeeded":
            continue
        if outcome.error is not None:
            code = f"{outcome.error.provider} {outcome.error.code}: " if outcome.error.code else ""
            parts.append(f"{key} {outcome.status} ({code}{outcome.error.message})")
        else:
            parts.append(f"{key} {outcome.status}")
    leaves = [key for step in shape.leaves() for key in shape.nodes(step)]
    good = sum(1 for key in leaves if (o := job.step_outcome(key)) is not None and o.status == "succeeded")
    join = job.request.join
    wanted = "all" if join == "all" else f"at least {join.at_least}"
    said = "; ".join(parts) or "no run failed"
    return f"{said}; {good} of {len(leaves)} final runs succeeded, the join needs {wanted}"


def _said(outcome: StepOutcome) -> str:
    said = outcome.status if outcome.job is None else f"{outcome.status}: job {outcome.job}"
    return f"{said} ({outcome.reason})" if outcome.reason else said
