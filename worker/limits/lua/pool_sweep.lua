-- Reap lapsed leases and wake parked callers into free slots.
return wake()
