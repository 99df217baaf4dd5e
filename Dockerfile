# The driftloop image: the CLI and every worker. TORCH_INDEX_URL picks the CPU or a CUDA build of the
# exactly pinned torch (docker-compose.yml builds the CPU one, docker-compose.gpu.yml the CUDA one).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /opt/driftloop
RUN pip install torch==2.13.0 --index-url "${TORCH_INDEX_URL}"
COPY pyproject.toml README.md ./
COPY cli ./cli
COPY infra ./infra
COPY streams ./streams
COPY retrain ./retrain
COPY release ./release
COPY models ./models
COPY analytics ./analytics
COPY demo ./demo
RUN pip install ".[all]"

RUN useradd --create-home --uid 10001 driftloop && mkdir -p /var/lib/driftloop && chown driftloop /var/lib/driftloop
USER driftloop
ENV DRIFTLOOP_HOME=/var/lib/driftloop
CMD ["driftloop", "--help"]
