# genq workers, Flower and the simulators: one image, the command picks the role (see compose.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package needs, so a local .venv or artifacts never enter the image.
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producers ./producers
COPY worker ./worker
COPY simulators ./simulators
COPY genq ./genq
RUN pip install . && rm -rf /src

# A non-root user; /artifacts is created here so that a named volume mounted on it inherits the owner.
RUN useradd --create-home --uid 10001 genq \
    && mkdir /artifacts \
    && chown genq:genq /artifacts
USER genq
WORKDIR /home/genq

ENV GENQ_ARTIFACT_DIR=/artifacts
CMD ["celery", "-A", "worker", "worker", "-Q", "default", "-n", "default@%h", "-E"]
