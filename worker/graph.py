"""What a job runs, in order: each kind's step graph, and what follows a step when it is done.

A graph is a list of steps, read top to bottom. A step runs once, or once per branch of a *fan* (its
width comes from the request, such as a music job's executions, or from what an earlier step recorded,
such as the number of upload chunks). Consecutive steps of one fan run per branch, each branch on its
own (``execute[2]`` → ``wait[2]`` → ``download[2]``); the step after a fan is a *join*: it runs once
every branch has done the fan's last step. A step may apply to some jobs only (``when``), and a step
may be *external*: another record's stages carry it (a batch's jobs wait in their batch).

Everything that decides what runs next is here; ``worker.stage`` turns it into messages, and one Lua
step (``JobStore.advance``) records a done step and pushes what follows, so a job never depends on a
message that was not written with the state that calls for it. The reconciler asks ``frontier`` what a
job whose message was lost should run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas import JobRecord, StageStatus
from schemas import layout as L
from schemas.wire import task_message


def state_key(name: str, branch: int | None) -> str:
    """Where the job record keeps a run's state: ``execute[2]`` for a branch, ``create`` otherwise."""
    return name if branch is None else f"{name}[{branch}]"


def parse_state_key(key: str) -> tuple[str, int | None]:
    """The step and branch of a state key: ``("execute", 2)`` for ``execute[2]``, ``("create", None)``."""
    name, bracket, rest = key.partition("[")
    if bracket and rest.endswith("]") and rest[:-1].isdigit():
        return name, int(rest[:-1])
    return key, None


# What a job's record says of the provider's side (its provider ids, and what its stages recorded of the
# provider's answers), as ``genq status`` shows it: (label, sentence) rows, e.g. ("generation", "3f0c…").
Facts = Callable[[JobRecord], list[tuple[str, str]]]


def clock(moment: datetime | str) -> str:
    """A moment (or its ISO 8601 text) as this host's time of day: ``12:03:04``."""
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return when.astimezone().strftime("%H:%M:%S")


def id_facts(job: JobRecord, *, said: Collection[str] = ()) -> list[tuple[str, str]]:
    """Each provider id of ``job`` under its own name, but those ``said`` otherwise."""
    return [(name, value) for name, value in job.provider_ids.items() if name not in said]


def step_done(job: JobRecord, name: str) -> bool:
    """Whether every run of step ``name`` (a fan's branches too) is done."""
    states = [s for key, s in job.stages.items() if key == name or key.startswith(name + "[")]
    return bool(states) and all(s.status is StageStatus.DONE for s in states)


def branch_of(args: Sequence[Any]) -> int | None:
    """The branch a run's task arguments name (the job id comes first, then the branch if any)."""
    return int(args[1]) if len(args) > 1 else None


def run_message(
    task: str,
    job_id: str,
    args: Sequence[str | int] = (),
    *,
    root_id: str | None,
    parent_id: str | None = None,
    retries: int = 0,
    kept: bool = False,
) -> tuple[str, str]:
    """(queue, message) of a run of ``task`` for a job: every run's message is made here, whoever pushes
    it (a job's start, a stage's end, a re-run, the reconciler)."""
    queue = L.queue_for_task(task)
    return queue, task_message(task, [job_id, *args], queue, root_id=root_id, parent_id=parent_id,
                               retries=retries, kept=kept)  # fmt: skip


@dataclass(frozen=True)
class Fan:
    """Parallel branches of one or more consecutive steps; ``width`` reads the job record."""

    name: str
    width: Callable[[JobRecord], int]


@dataclass(frozen=True)
class Step:
    name: str  # the stage name, as the job record shows it: "upload", "execute"
    task: str  # the Celery task that runs it: "genq.aimi.execute"
    fan: Fan | None = None
    when: Callable[[JobRecord], bool] | None = None
    external: bool = False  # done by another record's stages; never pushed for this job
    # The pools whose slot (taken by an earlier step) this step gives back when done: the reconciler frees
    # a slot whose step is done, should the release have been lost.
    releases: tuple[str, ...] = ()
    # Its runs take their state key as argument (``dub[1]``): one task runs every step (a pipeline's).
    keyed: bool = False
    # The step whose provider call costs money: the job reserves its cost against its tenant's spend budget
    # before it runs (worker/spend.py).
    spends: bool = False

    def state_key(self, branch: int | None) -> str:
        return state_key(self.name, branch)


@dataclass(frozen=True)
class Run:
    """One run of a step: the step, and its branch (None outside a fan)."""

    step: Step
    branch: int | None = None

    @property
    def state_key(self) -> str:
        return self.step.state_key(self.branch)

    @property
    def args(self) -> tuple[str | int, ...]:
        """The task's arguments after the job id."""
        if self.step.keyed:
            return (self.state_key,)
        return () if self.branch is None else (self.branch,)


@dataclass(frozen=True)
class Then:
    """Runs to push once every state of ``join`` is done (at once when there is none)."""

    runs: tuple[Run, ...] = ()
    join: tuple[str, ...] = ()


@dataclass(frozen=True)
class Next:
    """What follows a done step: ``runs`` to push once every state of ``join`` is done (none to wait
    for outside a join), or the job's end (``end``), once ``join`` is done. ``more``: other runs, each
    group with a join of its own (a pipeline's step that several later steps wait for)."""

    runs: tuple[Run, ...] = ()
    join: tuple[str, ...] = ()
    end: bool = False
    more: tuple[Then, ...] = ()

    @property
    def groups(self) -> tuple[Then, ...]:
        return (Then(self.runs, self.join), *self.more)


@dataclass(frozen=True)
class Graph:
    kind: str
    steps: tuple[Step, ...]
    facts: Facts = id_facts  # what a job's provider ids say, for ``genq status``
    _by_name: dict[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"graph {self.kind}: step names repeat: {names}")
        object.__setattr__(self, "_by_name", {s.name: s for s in self.steps})

    def step(self, name: str) -> Step:
        return self._by_name[name]

    def ordered(self, keys: Iterable[str]) -> list[str]:
        """State keys of a job's record in the order the job runs them: step after step, and through
        consecutive steps of one fan branch by branch, as each branch goes on by itself
        (``execute[0]``, ``wait[0]``, ``download[0]``, ``execute[1]`` …); keys of no step come last, as
        given."""
        place: dict[str, tuple[int, int]] = {}  # step -> (the first step of its group, its own index)
        first = 0
        for at, step in enumerate(self.steps):
            if not (at and step.fan is not None and self.steps[at - 1].fan is step.fan):
                first = at  # a step outside a fan, or a fan's first, starts a group
            place[step.name] = (first, at)

        def order(item: tuple[int, str]) -> tuple[int, int, int, int]:
            given, key = item
            name, branch = parse_state_key(key)
            if name not in place:
                return len(self.steps), 0, 0, given
            first, at = place[name]
            return first, -1 if branch is None else branch, at, given

        return [key for _, key in sorted(enumerate(keys), key=order)]

    def spending_step(self) -> Step | None:
        """The step whose provider call costs money (``Step.spends``), if the kind has one. By name only:
        a stage of that step that runs applies to its job."""
        return next((s for s in self.steps if s.spends), None)

    def spent(self, job: JobRecord) -> bool:
        """Whether the job's spending step is done: its provider job was made (every branch's, in a fan)."""
        step = self.spending_step()
        return step is not None and step_done(job, step.name)

    def applying(self, job: JobRecord) -> list[Step]:
        """The steps this job runs, in order."""
        return [s for s in self.steps if s.when is None or s.when(job)]

    def fans_out_after(self, job: JobRecord, name: str) -> bool:
        """Whether the step after ``name`` starts a fan of its own, whose width the run of ``name`` may
        have just recorded (the chunks ``upload_init`` counted)."""
        steps, at = self._position(job, name)
        following = steps[at + 1] if at + 1 < len(steps) else None
        return following is not None and following.fan is not None and following.fan is not steps[at].fan

    def first(self, job: JobRecord) -> list[Run]:
        """The runs that start the job."""
        return self._runs_of(self.applying(job)[0], job)

    def after(self, job: JobRecord, name: str, branch: int | None) -> Next:
        """What follows run ``name``/``branch`` of ``job`` once it is done."""
        steps, at = self._position(job, name)
        step = steps[at]
        if at + 1 == len(steps):
            return Next(join=self._join(step, job), end=True)
        following = steps[at + 1]
        if step.fan is not None and following.fan is step.fan and branch is not None:
            return Next(runs=(Run(following, branch),))  # the branch goes on by itself
        return Next(runs=tuple(self._runs_of(following, job)), join=self._join(step, job))

    def frontier(self, job: JobRecord) -> list[Run]:
        """The runs a job that has lost its messages should run now: each run not done whose step
        before it (its branch's, or every branch of a fan it joins) is done. External steps are
        another record's to run."""
        done = {key for key, state in job.stages.items() if state.status is StageStatus.DONE}
        steps = self.applying(job)
        runs: list[Run] = []
        before: list[str] = []  # the states of the step before, all of which a join waits for
        for i, step in enumerate(steps):
            previous = steps[i - 1] if i else None
            same_fan = previous is not None and previous.fan is not None and previous.fan is step.fan
            if not same_fan and not all(key in done for key in before):
                break  # not ready, and nothing after it can be (its width may not even be known yet)
            mine = self._runs_of(step, job)
            for run in mine:
                ready = previous is None or not same_fan or previous.state_key(run.branch) in done
                if ready and run.state_key not in done and not step.external:
                    runs.append(run)
            before = [run.state_key for run in mine]
        return runs

    def _position(self, job: JobRecord, name: str) -> tuple[list[Step], int]:
        steps = self.applying(job)
        return steps, next(i for i, s in enumerate(steps) if s.name == name)

    def _runs_of(self, step: Step, job: JobRecord) -> list[Run]:
        if step.fan is None:
            return [Run(step)]
        return [Run(step, n) for n in range(step.fan.width(job))]

    def _join(self, step: Step, job: JobRecord) -> tuple[str, ...]:
        """The states that must all be done before what follows ``step`` runs (its fan's branches)."""
        if step.fan is None:
            return ()
        return tuple(step.state_key(n) for n in range(step.fan.width(job)))
