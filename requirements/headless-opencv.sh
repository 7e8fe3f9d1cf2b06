#!/bin/sh
# Swap opencv-python for opencv-python-headless of the same version, in the venv whose pip is $1.
# gluoncv requires opencv-python, whose cv2 needs libGL (Mesa and LLVM, ~130 MB, absent from
# slim images and servers: "ImportError: libGL.so.1"); the headless build is the same cv2
# without GUI support. Used by `make venv` and the image build, so both run the same cv2.
set -eu
# Both wheels install into cv2/: removing opencv-python deletes files a headless build installed
# earlier shares, hence --force-reinstall.
pip=${1:-pip}
version=$("$pip" show opencv-python 2>/dev/null | awk '/^Version:/ {print $2}')
[ -n "$version" ] || exit 0  # already swapped
"$pip" uninstall -y -q opencv-python
"$pip" install -q --no-deps --force-reinstall "opencv-python-headless==${version}"
