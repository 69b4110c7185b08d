"""genq's Lua scripts outside the limiter: the schedule, parked waits, leases and claims."""

from importlib import resources


def source(name: str) -> str:
    return (resources.files(__name__) / f"{name}.lua").read_text()
