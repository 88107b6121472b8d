#!/usr/bin/env bash
# Debian packages the project needs: python3.11 + venv + libpython3.11 (the local tritonserver's Python-backend
# stub), redis-server (cache tests) and libb64-0d (perf_analyzer).
set -euo pipefail
missing=()
# Debian's Python 3.11 with venv and its shared library: the local tritonserver's Python-backend stub embeds it.
[ -x /usr/bin/python3.11 ] && /usr/bin/python3.11 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3.11 python3.11-venv)
ldconfig -p 2>/dev/null | grep -q 'libpython3.11.so.1.0' || missing+=(libpython3.11)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ldconfig -p 2>/dev/null | grep -q 'libb64.so.0d' || missing+=(libb64-0d)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "error: need root to install ${missing[*]} (apt-get install ${missing[*]})" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
