#!/usr/bin/env bash
# Sets up what the microcontroller path (common/deploy/mcu.py) needs: the Arm bare-metal toolchain and
# QEMU from the distribution's packages, and TensorFlow Lite Micro with CMSIS-NN at pinned commits, laid
# out so that TFLM's make downloads nothing. Run `bash install_mcu_toolchain.sh --help` for the options.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAYOUT_VERSION=2  # 2: the tree's manifest (.trecx-manifest), checked before each use
PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm xxd)

# name | tarball | commit | repository | place under TFLM's downloads folder ("." = the TFLM tree itself)
SOURCES="
tflite-micro|tflite-micro.tar.gz|90b983c2b3f1480642e040bbd2ddb37b998f3424|https://github.com/tensorflow/tflite-micro|.
cmsis_nn|CMSIS-NN.tar.gz|4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae|https://github.com/ARM-software/CMSIS-NN|cmsis_nn
cmsis|CMSIS_6.tar.gz|5782d6f8057906d360f4b95ec08a2354afe5c9b9|https://github.com/ARM-software/CMSIS_6|cmsis
cortex_dfp|Cortex_DFP.tar.gz|c2c70a97a20fb355815e2ead3d4a40e35a4a3cdf|https://github.com/ARM-software/Cortex_DFP|cmsis/Cortex_DFP
flatbuffers|flatbuffers.tar.gz|187240970746d00bbd26b0f5873ed54d2477f9f3|https://github.com/google/flatbuffers|flatbuffers
gemmlowp|gemmlowp.tar.gz|719139ce755a0f31cbf1c37f7f98adcc7fc9f425|https://github.com/google/gemmlowp|gemmlowp
ruy|ruy.tar.gz|d37128311b445e758136b8602d1bbd2a755e115d|https://github.com/google/ruy|ruy
kissfft|kissfft.tar.gz|918336beac80868ad3011cb283063bb224e3e5da|https://github.com/mborgerding/kissfft|kissfft
printf|printf.tar.gz|f8ed5a9bd9fa8384430973465e94aa14c925872d|https://github.com/eyalroz/printf|eyalroz_printf
"

usage() {
  cat <<EOF
Usage: bash install_mcu_toolchain.sh [--sources DIR | --fetch] [--home DIR] [--skip-packages] [--build CORE:KERNELS,...]

Installs the apt packages the emulated-microcontroller measurements need
(${PACKAGES[*]}) and lays out TensorFlow Lite Micro with CMSIS-NN and its
dependencies at pinned commits under the build home, patched so that TFLM's make downloads nothing.
Running it again with the same sources does nothing.

  --sources DIR    folder holding the source tarballs (tflite-micro.tar.gz, CMSIS-NN.tar.gz, ...; each a
                   'git archive' whose embedded commit id is checked); default: ../shared/third_party/tflm
                   beside the repository, when present
  --fetch          no tarballs: fetch each pinned commit from its repository with git (needs internet)
  --home DIR       build home (default: \$TRECX_MCU_HOME, else ~/.cache/trecx-mcu); TFLM goes to DIR/tflm.
                   The Python side finds it through \$TRECX_MCU_HOME: set that to the same folder
  --skip-packages  do not install packages, only check that the tools are there
  --build CORE:KERNELS,...  also build (or find cached) TFLM's library for each core and kernel set,
                   comma-separated, e.g. cortex-m4:cmsis-nn (what the tests use); needs the project's Python
                   requirements installed first (python3 -m pip install -r requirements.txt), which it
                   checks before anything else. Otherwise the first run on the microcontroller builds it.
  -h, --help       this text
EOF
}

die() { echo "install_mcu_toolchain.sh: $*" >&2; exit 2; }

SOURCES_DIR=""
FETCH=0
SKIP_PACKAGES=0
BUILDS=()
MCU_HOME="${TRECX_MCU_HOME:-$HOME/.cache/trecx-mcu}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --sources) [[ $# -ge 2 ]] || die "--sources needs a folder"
               [[ -d "$2" ]] || die "--sources $2: no such folder (it must hold tflite-micro.tar.gz, CMSIS-NN.tar.gz, ...)"
               SOURCES_DIR="$2"; shift 2 ;;
    --fetch) FETCH=1; shift ;;
    --home) [[ $# -ge 2 ]] || die "--home needs a folder"; MCU_HOME="$2"; shift 2 ;;
    --skip-packages) SKIP_PACKAGES=1; shift ;;
    --build) [[ $# -ge 2 ]] || die "--build needs CORE:KERNELS, e.g. cortex-m4:cmsis-nn"
             [[ ${#BUILDS[@]} -eq 0 ]] || die "--build given twice; give one comma-separated list: --build ${BUILDS[*]// /,},$2"
             IFS=, read -ra listed <<< "$2"  # one comma-separated list, as every list of the command line
             for choice in ${listed[@]+"${listed[@]}"}; do
               choice="${choice// /}"
               [[ -z "$choice" ]] && continue
               [[ "$choice" == *:* ]] || die "--build needs CORE:KERNELS, e.g. cortex-m4:cmsis-nn (several: comma-separated)"
               BUILDS+=("$choice")
             done
             [[ ${#BUILDS[@]} -gt 0 ]] || die "--build needs CORE:KERNELS, e.g. cortex-m4:cmsis-nn"
             shift 2 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# Checked before anything is installed.
if [[ ${#BUILDS[@]} -gt 0 ]]; then
  # --build runs the project's Python, and TFLM's make runs generators of its own that import NumPy and
  # Pillow: the project's requirements must be installed first (one message naming the command, if not).
  (cd "$REPO_ROOT" && python3 -m common.environment) || exit 2
fi
[[ ! -e "$MCU_HOME" || -d "$MCU_HOME" ]] || die "the build home $MCU_HOME is a file, not a folder; pass --home DIR (or set TRECX_MCU_HOME) to a folder"
mkdir -p "$MCU_HOME" 2>/dev/null || die "cannot create the build home $MCU_HOME; pass --home DIR (or set TRECX_MCU_HOME) to a writable folder"
[[ -w "$MCU_HOME" ]] || die "the build home $MCU_HOME is read-only; pass --home DIR (or set TRECX_MCU_HOME) to a writable folder"

# ------------------------------------------------------------------------------------------------
# Packages

tools_present() {
  command -v arm-none-eabi-gcc >/dev/null && command -v arm-none-eabi-g++ >/dev/null &&
    command -v qemu-system-arm >/dev/null && command -v xxd >/dev/null &&
    [[ -f "$(arm-none-eabi-gcc -print-file-name=librdimon.a)" ]] &&
    [[ -f "$(arm-none-eabi-g++ -print-file-name=libstdc++.a)" ]]
}

if tools_present; then
  echo "toolchain: arm-none-eabi-gcc $(arm-none-eabi-gcc -dumpversion), $(qemu-system-arm --version | head -n 1)"
elif [[ $SKIP_PACKAGES -eq 1 ]]; then
  die "the Arm toolchain or QEMU is missing; install the packages: ${PACKAGES[*]}"
elif [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  die "the Arm toolchain or QEMU is missing and this script can install them only as root on Debian/Ubuntu;
install these packages (e.g. sudo apt-get update && sudo apt-get install -y ${PACKAGES[*]}), then run it again"
else
  # Only what the packages depend on (no recommendations: QEMU's GTK front end and the like), and no
  # upgrade of an installed package unless a new one needs it (named before anything is changed).
  echo "installing ${PACKAGES[*]} and their dependencies (apt-get, no recommended packages)"
  apt-get update -q
  plan="$(apt-get install -s --no-install-recommends "${PACKAGES[@]}")"
  upgrades="$(echo "$plan" | awk '/^Inst / && $3 ~ /^\[/ {print $2}' | tr '\n' ' ')"
  if [[ -n "$upgrades" ]]; then
    echo "these installed packages must be upgraded, as the new ones need their newer versions: $upgrades"
  fi
  before_kb="$(df -k --output=used / | tail -n 1)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
  tools_present || die "the packages were installed but the tools are still missing"
  installed="$(echo "$plan" | grep -c '^Inst ' || true)"
  echo "installed $installed packages, $(( ($(df -k --output=used / | tail -n 1) - before_kb) / 1024 )) MB of disk"
fi
command -v git >/dev/null || die "git is needed to check the source tarballs' commits; install it (apt-get install git)"
command -v patch >/dev/null || die "patch is needed; install it (apt-get install patch)"

# ------------------------------------------------------------------------------------------------
# Sources

MCU_HOME="$(cd "$MCU_HOME" && pwd)"
TFLM="$MCU_HOME/tflm"
STAMP="$TFLM/.trecx-sources"
expected_stamp() {
  echo "layout $LAYOUT_VERSION"
  echo "$SOURCES" | while IFS='|' read -r name _ commit _ _; do
    if [[ -n "$name" ]]; then echo "$name $commit"; fi
  done
}
build_libraries() {
  local choice
  for choice in ${BUILDS[@]+"${BUILDS[@]}"}; do
    (cd "$REPO_ROOT" && TRECX_MCU_HOME="$MCU_HOME" python3 -c \
      "import sys; from common.deploy import mcu_build; from common.errors import UserError
try: print(mcu_build.library(sys.argv[1], sys.argv[2]).lib)
except UserError as e: sys.exit(f'install_mcu_toolchain.sh: {e}')" "${choice%%:*}" "${choice#*:}")
  done
}
# Every file the tree was laid out with, and its size: a tree missing one, or holding it changed, is
# damaged (common/deploy/mcu_build.py checks the same before each use).
write_manifest() { (cd "$1" && find . -type f ! -name .trecx-manifest ! -name .trecx-sources -printf '%P %s\n' | LC_ALL=C sort); }
tree_damage() {
  [[ -f "$TFLM/.trecx-manifest" ]] || { echo "no manifest"; return; }
  LC_ALL=C comm -23 "$TFLM/.trecx-manifest" <(write_manifest "$TFLM") | sed -n 1p
}
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(expected_stamp)" ]]; then
  damage="$(tree_damage)"
  if [[ -z "$damage" ]]; then
    echo "TFLM sources: up to date in $TFLM"
    build_libraries
    exit 0
  fi
  echo "TFLM sources in $TFLM are damaged (first: $damage); laying them out again"
fi

if [[ $FETCH -eq 0 && -z "$SOURCES_DIR" ]]; then
  if [[ -d "$REPO_ROOT/../shared/third_party/tflm" ]]; then
    SOURCES_DIR="$REPO_ROOT/../shared/third_party/tflm"
  else
    die "no source tarballs: pass --sources DIR (a folder holding tflite-micro.tar.gz, CMSIS-NN.tar.gz, ...) or --fetch"
  fi
fi

WORK="$(mktemp -d "$MCU_HOME/.install.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

if [[ $FETCH -eq 1 ]]; then
  SOURCES_DIR="$WORK/tarballs"
  mkdir -p "$SOURCES_DIR"
  echo "$SOURCES" | while IFS='|' read -r name file commit url _; do
    [[ -n "$name" ]] || continue
    echo "fetching $url at $commit"
    repo="$WORK/git-$name"
    git init -q "$repo"
    git -C "$repo" fetch -q --depth 1 "$url" "$commit"
    git -C "$repo" archive --format=tar.gz -o "$SOURCES_DIR/$file" "$commit"
  done
fi
SOURCES_DIR="$(cd "$SOURCES_DIR" && pwd)"

NEW="$WORK/tflm"
DOWNLOADS="$NEW/tensorflow/lite/micro/tools/make/downloads"
echo "$SOURCES" | while IFS='|' read -r name file commit _ place; do
  [[ -n "$name" ]] || continue
  tarball="$SOURCES_DIR/$file"
  [[ -f "$tarball" ]] || die "missing $tarball (the sources folder must hold $file)"
  gzip -t "$tarball" 2>/dev/null || die "$tarball is truncated or corrupt (gzip -t fails); replace it with an intact copy of commit $commit"
  found="$(zcat "$tarball" | git get-tar-commit-id || true)"
  [[ "$found" == "$commit" ]] || die "$tarball is commit '${found:-none}', expected $commit"
  if [[ "$place" == "." ]]; then
    target="$NEW"
  else
    target="$DOWNLOADS/$place"
  fi
  mkdir -p "$target"
  tar -xzf "$tarball" -C "$target" 2>/dev/null || die "$tarball cannot be unpacked (truncated or corrupt); replace it with an intact copy of commit $commit"
  echo "unpacked $file ($commit)"
done
[[ -f "$NEW/tensorflow/lite/micro/tools/make/Makefile" ]] || die "tflite-micro.tar.gz does not hold TFLM's Makefile"

# What TFLM's download scripts would do after downloading, done here once.
find "$DOWNLOADS/flatbuffers" \( -name BUILD -o -name BUILD.bazel \) -delete
patch -s -p1 -d "$DOWNLOADS/flatbuffers" < "$NEW/tensorflow/lite/micro/tools/make/flatbuffers.patch"
patch -s -p1 -d "$DOWNLOADS/kissfft" < "$NEW/third_party/kissfft/kissfft.patch"
mkdir -p "$DOWNLOADS/pigweed"  # its download runs on every make; the library does not use it
mkdir -p "$DOWNLOADS/gcc_embedded/bin"  # the distribution's arm-none-eabi tools instead of Arm's download
gcc_dir="$(dirname "$(command -v arm-none-eabi-gcc)")"
for tool in "$gcc_dir"/arm-none-eabi-*; do
  ln -s "$tool" "$DOWNLOADS/gcc_embedded/bin/$(basename "$tool")"
done

write_manifest "$NEW" > "$NEW/.trecx-manifest"
expected_stamp > "$NEW/.trecx-sources"
rm -rf "$TFLM"
mv "$NEW" "$TFLM"
echo "TFLM sources ready in $TFLM (builds are cached under $MCU_HOME/build)"
build_libraries
