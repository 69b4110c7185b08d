"""The ``pipeline`` request: named steps, each an ordinary ``lipsync``, ``avatar`` or ``music`` request,
whose media inputs may take an earlier step's output, with fan-out, joins and a failure policy.

    {"kind": "pipeline",
     "steps": {
       "avatar": {"request": {"kind": "avatar", "script": "…", "model": "M000045058", "clothes": "1"}},
       "dub":    {"request": {"kind": "lipsync", "model": "lipsync-2", "video": {"from": "avatar"}},
                  "for_each": [{"audio": "https://…/fr.wav", "output_file_name": "promo_fr"}, …]},
       "score":  {"request": {"kind": "music", "video": {"from": "dub"}}}},
     "join": {"at_least": 2}, "on_failure": "continue"}

- A reference ``{"from": "<step>"}`` (``"output": n`` for a step's n-th output, default 0) stands where a
  media input goes (``MEDIA_INPUTS``); the step then depends on that one.
- ``for_each``: the step runs once per item, each item's fields laid over its ``request`` (a *fan*). A
  step that depends on a fanned step runs per branch of it, branch ``i`` with branch ``i``'s output;
  fans do not nest.
- ``after``: more steps to wait for, without taking their output. A step with ``join`` does not run per
  branch of what it waits for: it runs once, when ``join`` (``"all"``, the default, or ``{"at_least":
  k}``) of the runs it waits for succeeded and the rest ended.
- The pipeline succeeds when its ``join`` holds over the runs of its *leaf* steps (those no step
  depends on). ``on_failure``: ``fail_fast`` (default) ends the pipeline, cancelling what still runs,
  as soon as that can no longer hold; ``continue`` runs everything that does not depend on a failure.

Each run of a step (a *node*: ``dub[1]``, or ``avatar`` outside a fan) becomes a job of its own when its
inputs are ready. ``Shape`` is the pipeline's graph worked out from the request; the producer checks it
at submit (``PipelineRequest.problems``) and the workers walk it (``worker/pipeline``).
"""

from __future__ import annotations

import copy
import graphlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue, ValidationError

from schemas.base import JobRequestBase, Strict, is_local_path
from schemas.caps import Caps, over
from schemas.problems import problem_of

StepName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
END = "end"  # the pipeline's own last run: it ends the pipeline (a step may not take the name)
MEMBER_KINDS = ("lipsync", "avatar", "music")
# The fields of each kind that take a step's output, and what each takes: "tracks.*.audio" is every
# track's audio. A step's output is a video (a music job's is a zip of stems with plan_options.multitrack).
MEDIA_INPUTS: Mapping[str, Mapping[str, str]] = {
    "lipsync": {"video": "video", "image": "image", "audio": "audio", "tracks.*.audio": "audio"},
    "music": {"video": "video"},
    "avatar": {},
}
# A pipeline record's data fields: "step:<node>" -> how the node ended (``records.StepOutcome``), and
# "generations" -> {node: how often it was replayed}, part of the id of the node's job.
OUTCOME_PREFIX = "step:"
GENERATIONS = "generations"
# What stands for a reference while a member request is checked at submit (any output store URL).
PLACEHOLDER = "output:s3://genq-pipeline/placeholder.mp4"


class AtLeast(Strict):
    at_least: int = Field(ge=1)


Join = Literal["all"] | AtLeast


class PipelineStep(Strict):
    request: dict[str, JsonValue]
    for_each: Annotated[list[dict[str, JsonValue]], Field(min_length=1)] | None = None
    after: list[StepName] = Field(default_factory=list, max_length=64)
    join: Join | None = None

    def parts(self) -> list[tuple[str, dict[str, Any]]]:
        """``request`` and each item of ``for_each``, by where they are in the step."""
        return [("request", self.request)] + [
            (f"for_each.{i}", it) for i, it in enumerate(self.for_each or [])
        ]


@dataclass(frozen=True)
class Ref:
    """A reference in a step's request: ``path`` (``video``, ``tracks.1.audio``) takes output
    ``output`` of step ``step``."""

    path: str
    step: str
    output: int = 0


@dataclass(frozen=True)
class Need:
    """A node another node waits for: ``required`` (its output is taken, so it must succeed) or held to
    the waiting step's join policy."""

    key: str
    required: bool


@dataclass
class Shape:
    """A pipeline's graph, worked out from its request: each step's dependencies, fan and nodes."""

    order: list[str]  # the steps, dependencies first (the request's order where it is free)
    deps: dict[str, list[str]]
    refs: dict[str, list[Ref]]
    fan: dict[str, str | None]  # the step whose for_each a step runs per branch of, if any
    width: dict[str, int]  # branches of each fan-starting step
    problems: list[str] = field(default_factory=list)

    def nodes(self, step: str) -> list[str]:
        """The state keys of a step's runs: ``dub[0]``, ``dub[1]`` … in a fan, else the step's name."""
        origin = self.fan[step]
        if origin is None:
            return [step]
        return [node_key(step, b) for b in range(self.width[origin])]

    def branches(self, step: str) -> list[int | None]:
        origin = self.fan[step]
        return [None] if origin is None else list(range(self.width[origin]))

    def all_nodes(self) -> list[str]:
        return [key for step in self.order for key in self.nodes(step)]

    def leaves(self) -> list[str]:
        """Steps no other step depends on."""
        needed = {dep for deps in self.deps.values() for dep in deps}
        return [s for s in self.order if s not in needed]

    def needs(self, step: str, branch: int | None) -> list[Need]:
        """The nodes run ``step``/``branch`` waits for."""
        referenced = {ref.step for ref in self.refs[step]}
        found: list[Need] = []
        for dep in self.deps[step]:
            keys = [self.dep_node(step, dep, branch)] if self._same_fan(step, dep) else self.nodes(dep)
            found += [Need(key, dep in referenced) for key in keys]
        return found

    def dep_node(self, step: str, dep: str, branch: int | None) -> str:
        """The run of ``dep`` whose output run ``step``/``branch`` takes: its own branch's, in one fan."""
        return node_key(dep, branch if self._same_fan(step, dep) else None)

    def _same_fan(self, step: str, dep: str) -> bool:
        return self.fan[dep] is not None and self.fan[dep] == self.fan[step]

    def dependents(self, step: str) -> list[str]:
        return [s for s in self.order if step in self.deps[s]]


def node_key(step: str, branch: int | None) -> str:
    return step if branch is None else f"{step}[{branch}]"


def parse_node(key: str) -> tuple[str, int | None]:
    """``("dub", 1)`` for ``dub[1]``, ``("avatar", None)`` for ``avatar``."""
    name, _, rest = key.partition("[")
    return (name, int(rest.rstrip("]"))) if rest else (name, None)


def refs_in(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``{"from": …}`` object in a request, with its field path (``tracks.1.audio``)."""
    if isinstance(value, dict):
        if "from" in value:
            yield path, value
            return
        for key, item in value.items():
            yield from refs_in(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from refs_in(item, f"{path}.{i}" if path else str(i))


def _pattern(path: str) -> str:
    return ".".join("*" if part.isdigit() else part for part in path.split("."))


def replace_at(request: dict[str, Any], path: str, value: Any) -> None:
    """Set the field at ``path`` (``tracks.1.audio``) of ``request`` to ``value``, in place."""
    parts = path.split(".")
    target: Any = request
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last = parts[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


class PipelineRequest(JobRequestBase):
    """Steps of other kinds, run as jobs of their own in the order their inputs allow (module doc)."""

    kind: Literal["pipeline"] = "pipeline"
    steps: dict[StepName, PipelineStep] = Field(min_length=1)
    join: Join = "all"
    on_failure: Literal["fail_fast", "continue"] = "fail_fast"

    def member(self, step: str, branch: int | None) -> dict[str, Any]:
        """The request of one run of ``step`` as given: ``request`` with branch ``branch``'s item laid
        over it, references still in place, and the pipeline's tenant."""
        spec = self.steps[step]
        request = copy.deepcopy(spec.request)
        if spec.for_each is not None and branch is not None:
            request.update(copy.deepcopy(spec.for_each[branch]))
        if self.tenant is not None:
            request["tenant"] = self.tenant
        return request

    def shape(self) -> Shape:
        """The graph of steps, with a ``<field>: <problem>`` line for each thing wrong with it."""
        problems: list[str] = []
        names = list(self.steps)
        refs: dict[str, list[Ref]] = {}
        deps: dict[str, list[str]] = {}
        for name, spec in self.steps.items():
            where = f"steps.{name}"
            if name == END:
                problems.append(f"{where}: '{END}' is the pipeline's own last step; name the step otherwise")
            refs[name] = list(self._refs(name, problems))
            wanted = [r.step for r in refs[name]] + list(spec.after)
            for dep in dict.fromkeys(wanted):
                if dep not in self.steps:
                    field_ = "after" if dep in spec.after else "request"
                    problems.append(f"{where}.{field_}: no step named {dep!r} (steps: {', '.join(names)})")
            deps[name] = [d for d in dict.fromkeys(wanted) if d in self.steps]
        order = self._order(deps, problems)
        shape = Shape(order, deps, refs, dict.fromkeys(names), {}, problems)
        if problems:
            return shape
        self._fans(shape)
        self._kinds(shape)
        if not shape.problems:
            self._joins(shape)
        return shape

    def _refs(self, name: str, problems: list[str]) -> Iterator[Ref]:
        spec = self.steps[name]
        kind = spec.request.get("kind")
        inputs = MEDIA_INPUTS.get(kind, {}) if isinstance(kind, str) else {}
        seen: set[Ref] = set()
        for where, value in spec.parts():
            for path, ref in refs_in(value):
                at = f"steps.{name}.{where}.{path}"
                extra = set(ref) - {"from", "output"}
                if extra or not isinstance(ref.get("from"), str):
                    problems.append(f"{at}: a reference is {{\"from\": \"<step>\"}}, with \"output\": n for "
                                    "a step's n-th output")  # fmt: skip
                    continue
                output = ref.get("output", 0)
                if not isinstance(output, int) or isinstance(output, bool) or output < 0:
                    problems.append(f"{at}.output: must be a whole number, 0 or more")
                    continue
                if _pattern(path) not in inputs:
                    takes = f"only in {', '.join(inputs)}" if inputs else "in none of its fields"
                    a = "an" if str(kind)[:1] in "aeiou" else "a"
                    problems.append(f"{at}: takes no step's output ({a} {kind} request takes one {takes})")
                    continue
                made = Ref(path, ref["from"], output)
                if made not in seen:
                    seen.add(made)
                    yield made

    def _order(self, deps: dict[str, list[str]], problems: list[str]) -> list[str]:
        sorter = graphlib.TopologicalSorter({name: deps[name] for name in self.steps})
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            cycle = list(reversed(exc.args[1]))
            problems.append(f"steps.{cycle[0]}: a cycle: {' → '.join(cycle)}")
            return list(self.steps)
        # Kahn's order, taking ready steps in the request's order.
        position = {name: i for i, name in enumerate(self.steps)}
        order: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            order += ready
            sorter.done(*ready)
        return order

    def _fans(self, shape: Shape) -> None:
        for name in shape.order:
            spec = self.steps[name]
            where = f"steps.{name}"
            inherited = sorted({o for d in shape.deps[name] if (o := shape.fan[d]) is not None})
            if spec.join is not None:
                fanned = [r for r in shape.refs[name] if shape.fan[r.step] is not None]
                for ref in fanned:
                    problem = f"{ref.step} runs per branch; a step with a join runs once, not per branch"
                    shape.problems.append(f"{where}.request.{ref.path}: {problem}")
                inherited = []
            if len(inherited) > 1:
                shape.problems.append(f"{where}: runs after two fans ({' and '.join(inherited)}); give it a "
                                      "join to run once after both")  # fmt: skip
                continue
            if spec.for_each is not None:
                if inherited:
                    shape.problems.append(f"{where}.for_each: {name} already runs per branch of "
                                          f"{inherited[0]}; fans do not nest")  # fmt: skip
                    continue
                shape.fan[name] = name
                shape.width[name] = len(spec.for_each)
            elif inherited:
                shape.fan[name] = inherited[0]

    def _kinds(self, shape: Shape) -> None:
        """Each reference takes an output of the kind its field wants, that the step has."""
        for name in shape.order:
            for ref in shape.refs[name]:
                at = f"steps.{name}.request.{ref.path}"
                dep = self.member(ref.step, 0 if shape.fan[ref.step] else None)
                gives, count = _output_of(dep)
                wants = MEDIA_INPUTS[str(self.steps[name].request["kind"])][_pattern(ref.path)]
                if gives != wants:
                    problems = f"takes {wants}; step {ref.step!r} ({dep.get('kind')}) gives {_article(gives)}"
                    shape.problems.append(f"{at}: {problems}")
                elif ref.output >= count:
                    shape.problems.append(f"{at}: output {ref.output} of step {ref.step!r}, which gives "
                                          f"{count} output{'s' if count > 1 else ''}")  # fmt: skip

    def _joins(self, shape: Shape) -> None:
        for name in shape.order:
            spec = self.steps[name]
            if isinstance(spec.join, AtLeast):
                joined = [n for n in shape.needs(name, 0 if shape.fan[name] else None) if not n.required]
                if spec.join.at_least > len(joined):
                    waits = f"the step waits for {len(joined)} run(s) it takes no output from"
                    shape.problems.append(f"steps.{name}.join.at_least: {spec.join.at_least}, but {waits}")
        if isinstance(self.join, AtLeast):
            leaves = [key for step in shape.leaves() for key in shape.nodes(step)]
            if self.join.at_least > len(leaves):
                shape.problems.append(f"join.at_least: {self.join.at_least}, but the pipeline ends in "
                                      f"{len(leaves)} run(s) ({', '.join(leaves)})")  # fmt: skip

    def problems(self, caps: Caps) -> list[str]:
        """Everything wrong with the pipeline, one line each: its graph, and each run's request as a
        request of its kind (references stand in as output store URLs)."""
        shape = self.shape()
        problems = list(shape.problems)
        if problems:
            return problems
        nodes = shape.all_nodes()
        for line in (
            over("steps", len(self.steps), "steps", caps.max_pipeline_steps, "max_pipeline_steps"),
            over("pipeline", len(nodes), "runs of steps", caps.max_pipeline_jobs, "max_pipeline_jobs"),
        ):
            if line:
                problems.append(line)
        if problems:
            return problems
        seen: set[str] = set()
        for name in shape.order:
            for branch in shape.branches(name):
                for line in self._member_problems(name, branch, caps):
                    if line not in seen:
                        seen.add(line)
                        problems.append(line)
        return problems

    def _member_problems(self, name: str, branch: int | None, caps: Caps) -> list[str]:
        from schemas.requests import KINDS, MEMBER_REQUEST  # noqa: PLC0415 (requests imports this module)

        spec = self.steps[name]
        request = self.member(name, branch)
        item = spec.for_each[branch] if spec.for_each is not None and branch is not None else {}

        def where(loc: str) -> str:
            top = loc.split(".", 1)[0]
            return f"steps.{name}.for_each.{branch}.{loc}" if top in item else f"steps.{name}.request.{loc}"

        if "tenant" in spec.request or "tenant" in item:
            return [f"{where('tenant')}: set tenant on the pipeline; each step's job takes the pipeline's"]
        kind = request.get("kind")
        if kind not in MEMBER_KINDS:
            said = "missing" if kind is None else f"{kind!r} cannot be a step"
            return [f"{where('kind')}: {said}; a step is one of {', '.join(MEMBER_KINDS)}"]
        for path, _ in refs_in(request):
            replace_at(request, path, PLACEHOLDER)
        try:
            member = MEMBER_REQUEST.validate_python(request)
        except ValidationError as exc:
            model = KINDS[str(kind)].model
            lines = []
            for err in exc.errors():
                parts = list(err["loc"])
                parts = parts[1:] if parts and parts[0] in MEMBER_KINDS else parts
                at = ".".join(str(p) for p in parts) or "kind"
                lines.append(f"{where(at)}: {problem_of(err, parts, model)}")
            return lines
        lines = []
        for line in member.over_caps(caps):
            loc, _, problem = line.partition(": ")
            lines.append(f"{where(loc)}: {problem}")
        return lines

    def local_files(self) -> dict[str, str]:
        """Every local file the steps name, by ``steps.<step>.request.<field>`` (or ``for_each.<i>``)."""
        found: dict[str, str] = {}
        for name, spec in self.steps.items():
            inputs = MEDIA_INPUTS.get(str(spec.request.get("kind")), {})
            for where, value in spec.parts():
                for path, text in _strings(value):
                    if is_local_path(text) and _pattern(path) in inputs:
                        found[f"steps.{name}.{where}.{path}"] = text
        return found

    def over_caps(self, caps: Caps) -> list[str]:
        """What ``problems`` finds: a pipeline is checked whole when its caps are."""
        return self.problems(caps)


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict) and "from" not in value:
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}.{i}" if path else str(i))


def _output_of(request: Mapping[str, Any]) -> tuple[str, int]:
    """What a step's run gives (``video`` or ``zip``) and how many outputs, from its request as given."""
    if request.get("kind") == "music":
        options = request.get("plan_options")
        multitrack = isinstance(options, dict) and options.get("multitrack") is True
        executions = request.get("executions", 1)
        return ("zip" if multitrack else "video"), executions if isinstance(executions, int) else 1
    return "video", 1


def _article(what: str) -> str:
    return f"a {what}" if what != "zip" else "a zip (plan_options.multitrack)"
