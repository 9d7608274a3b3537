# Sourced by the project's scripts: points EFFECT_IPC_LIBNNG at the patched libnng that
# scripts/libnng.sh built (when it built one, and the caller chose none).
if [ -z "${EFFECT_IPC_LIBNNG:-}" ] && [ -f "$(dirname "${BASH_SOURCE[0]}")/../.cache/libnng-1.12.0/libnng.so.1" ]; then
  EFFECT_IPC_LIBNNG="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/libnng-1.12.0/libnng.so.1"
  export EFFECT_IPC_LIBNNG
fi
