# genq workers, Flower and the simulators: one image, the command picks the role (see compose.yaml).
# UV_COMPILE_BYTECODE: the image carries its bytecode, so no process compiles genq or a dependency at
# start (PYTHONDONTWRITEBYTECODE keeps them from writing any at run time).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/genq \
    PATH=/opt/genq/bin:$PATH

WORKDIR /src
# uv by its hashes, then exactly the locked runtime dependencies (no dev tools) and genq itself.
COPY .ci/uv.txt /tmp/uv.txt
RUN pip install --no-deps --require-hashes -r /tmp/uv.txt && rm /tmp/uv.txt
# Only what the package needs, so a local .venv or artifacts never enter the image.
COPY pyproject.toml uv.lock README.md ./
COPY schemas ./schemas
COPY producers ./producers
COPY worker ./worker
COPY storage ./storage
COPY simulators ./simulators
COPY genq ./genq
RUN uv sync --locked --no-dev --no-editable && rm -rf /src

# A non-root user; /artifacts is created here so that a named volume mounted on it inherits the owner.
RUN useradd --create-home --uid 10001 genq \
    && mkdir /artifacts \
    && chown genq:genq /artifacts
USER genq
WORKDIR /home/genq

ENV GENQ_ARTIFACT_DIR=/artifacts
CMD ["celery", "-A", "worker", "worker", "-Q", "default", "-n", "default@%h", "-E"]
