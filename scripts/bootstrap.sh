# Shared by scripts/serve and scripts/test: system packages and the virtualenv.
# Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZANUO_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

need_system_packages() {
  local missing=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${missing[*]} with apt-get" >&2
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "please install: ${missing[*]} (Mosquitto 2.x and OpenSSL), then run this again" >&2
    return 1
  fi
}

ensure_venv() {
  local extras="$1"
  if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.zanuo-installed-$extras"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$PY" -m pip install -q --upgrade pip
    if [ -n "$extras" ]; then
      "$PY" -m pip install -q -e "$ROOT[$extras]"
    else
      "$PY" -m pip install -q -e "$ROOT"
    fi
    touch "$stamp"
  fi
}

# Mosquitto lives in /usr/sbin on Debian, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin"
