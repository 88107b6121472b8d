# syntax=docker/dockerfile:1
# Builder image: TensorRT from the same release as the serving image (24.10: TensorRT 10.5), so plans are
# built with the TensorRT version the server runs. Build from the project root, run on a GPU machine:
#   docker build -f docker/Dockerfile.builder -t tritonforge-builder:24.10 .
#   docker run --rm --gpus all -v "$PWD":/work -w /work tritonforge-builder:24.10 build examples/minilm/spec.yaml
ARG TRITON_TAG=24.10
FROM nvcr.io/nvidia/tensorrt:${TRITON_TAG}-py3

# torch for CUDA 12 first (an open requirement would pull whatever pip likes), then the project without the
# `gpu` extra: the container's own TensorRT must not be replaced by a wheel of another version.
RUN python3 -m pip install --no-cache-dir torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124
COPY pyproject.toml README.md /opt/tritonforge/
COPY tritonforge /opt/tritonforge/tritonforge
RUN python3 -m pip install --no-cache-dir "/opt/tritonforge[examples,perf]" "nvidia-ml-py>=12" \
 && python3 -c "import tensorrt; print('TensorRT', tensorrt.__version__)"

WORKDIR /work
ENTRYPOINT ["tritonforge"]
CMD ["--help"]
