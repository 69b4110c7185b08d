"""Provider budgets shared by every worker: rate turns and concurrency leases (see ``base``)."""

from worker.limits.base import BudgetState, Limiter, RateTurn, Turn, Unlimited, Waiter
from worker.limits.budgets import Budgets, LimitsSettings, Pool, RateBudget
from worker.limits.gate import Gate, Parked
from worker.limits.memory import MemoryLimiter
from worker.limits.redis_limiter import RedisLimiter

__all__ = [
    "BudgetState",
    "Budgets",
    "Gate",
    "Limiter",
    "LimitsSettings",
    "MemoryLimiter",
    "Parked",
    "Pool",
    "RateBudget",
    "RateTurn",
    "RedisLimiter",
    "Turn",
    "Unlimited",
    "Waiter",
]
