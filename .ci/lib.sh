# Shared by .ci/test and .ci/demo (sourced): install what is missing when we may, and say so.
# The caller sets TAG (the prefix of every line) before sourcing.

say() { echo "[${TAG:-ci}] $*"; }

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing missing system packages with apt-get: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    say "missing: $* — install them (Debian: sudo apt-get install $*) and run again"
    exit 1
  fi
}

server_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
have_initdb() { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }

# ffmpeg/ffprobe and espeak-ng: the render engine and the example spec's voice.
missing_media() {
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
}

ensure_uv() {
  if ! command -v uv >/dev/null; then
    say "installing uv from PyPI"
    if ! python3 -m pip --version >/dev/null 2>&1; then apt_install python3-pip python3-venv; fi
    python3 -m pip install -q --user uv 2>/dev/null || python3 -m pip install -q --break-system-packages uv
    export PATH="$HOME/.local/bin:$PATH"
  fi
}
