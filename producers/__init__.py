"""The enqueue side of genq: what a backend installs to submit jobs and follow them."""

from producers.jobs import JobListing
from producers.producer import BatchSubmission, InvalidRequest, JobNotFound, Producer, validate

__all__ = ["BatchSubmission", "InvalidRequest", "JobListing", "JobNotFound", "Producer", "validate"]
