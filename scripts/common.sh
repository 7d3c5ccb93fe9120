# Shared by scripts/demo and scripts/test. Picks the configure preset:
#   LATTICE_PRESET if set; else `ci` (CUDA sources compiled) when nvcc exists;
#   else `cpu`.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

if [[ -z "${LATTICE_PRESET:-}" ]]; then
  if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
    LATTICE_PRESET=ci
    export PATH="$PATH:/usr/local/cuda/bin"
  else
    LATTICE_PRESET=cpu
  fi
fi
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"

configure_and_build() {
  cmake --preset "$LATTICE_PRESET" >/dev/null
  cmake --build --preset "$LATTICE_PRESET" "$@"
}
