# Sourced by the Wine scripts and the Windows tests' runner: where Node for Windows and the Wine
# prefix live (under .cache/, made by scripts/wine-setup.sh), and a headless, quiet Wine.
wine_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export WIN_NODE_VERSION=22.23.3
export WIN_NODE="$wine_root/.cache/win/node-v$WIN_NODE_VERSION/node.exe"
export WINEPREFIX="$wine_root/.cache/wine"
export WINEDEBUG=-all
# no Mono or Gecko installer dialogs; no X display
export WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY
# Node 22 for Windows refuses to start on a system it does not recognise without this
export NODE_SKIP_PLATFORM_CHECK=1
# compiled code kept between runs: Node for Windows under Wine takes seconds to load the sources.
# Given to Node for Windows only (scripts/wine.sh): a Linux node would take the Windows path for a
# relative one and make a directory `Z:` where it runs (the setup's checks run one in the repository)
WIN_COMPILE_CACHE="Z:$wine_root/.cache/win/compile-cache"
