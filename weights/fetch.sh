#!/bin/sh
# Fetches the official Keras ImageNet weights of VGG16 (or VGG19) into this folder (or --dir DIR),
# verifying each file's MD5 before it appears under its final name: the download goes to a
# temporary file in the same folder and is renamed only after the checksum matches, so an
# interrupted or corrupted download never leaves a file that cutune would load.
#
#   sh weights/fetch.sh                    the VGG16 notop file (58.9 MB): what fine-tuning needs
#   sh weights/fetch.sh --full             also the file with fc1, fc2, predictions (553 MB)
#   sh weights/fetch.sh --backbone vgg19   VGG19's files instead (80.1 MB; --full: 574.7 MB)
#
# The names and checksums are those of Keras's source (keras.applications.vgg16 / vgg19) and of
# cutune's backbone tables (src/model/backbones.c).
#
# For tests of this script: CUTUNE_FETCH_URL replaces the download folder (e.g. file:///tmp/x/)
# and CUTUNE_FETCH_MD5 replaces the expected checksum.
set -u

select_backbone() { # NAME
    case "$1" in
    vgg16)
        FOLDER=vgg16
        NOTOP=vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
        NOTOP_MD5=6d6bbae143d832006294945121d1f1fc
        NOTOP_MB=58.9
        FULL=vgg16_weights_tf_dim_ordering_tf_kernels.h5
        FULL_MD5=64373286793e3c8b2b4e3219cbf3544b
        FULL_MB=553
        ;;
    vgg19)
        FOLDER=vgg19
        NOTOP=vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
        NOTOP_MD5=253f8cb515780f3b799900260a226db6
        NOTOP_MB=80.1
        FULL=vgg19_weights_tf_dim_ordering_tf_kernels.h5
        FULL_MD5=cbe5617147190e668d6c5d5026f83318
        FULL_MB=574.7
        ;;
    *) echo "fetch.sh: unknown backbone '$1' (vgg16, vgg19)" >&2; exit 2 ;;
    esac
    BASE=${CUTUNE_FETCH_URL:-https://storage.googleapis.com/tensorflow/keras-applications/$FOLDER/}
}
select_backbone vgg16

usage() {
    cat <<EOF
usage: sh weights/fetch.sh [--backbone vgg16|vgg19] [--full] [--dir DIR]

Downloads $NOTOP ($NOTOP_MB MB, MD5 $NOTOP_MD5)
and with --full also $FULL ($FULL_MB MB, MD5 $FULL_MD5)
from $BASE
into DIR (default: the folder of this script), checking each MD5 before the file appears
under its name. cutune finds them there for --weights imagenet.
EOF
}

DIR=$(cd "$(dirname "$0")" && pwd)
WANT_FULL=0
while [ $# -gt 0 ]; do
    case "$1" in
    --full) WANT_FULL=1 ;;
    --backbone)
        [ $# -ge 2 ] || { echo "fetch.sh: --backbone needs vgg16 or vgg19" >&2; exit 2; }
        select_backbone "$2"
        shift
        ;;
    --backbone=*) select_backbone "${1#--backbone=}" ;;
    --dir)
        [ $# -ge 2 ] || { echo "fetch.sh: --dir needs a folder" >&2; exit 2; }
        DIR=$2
        shift
        ;;
    --dir=*) DIR=${1#--dir=} ;;
    -h | --help) usage; exit 0 ;;
    *) echo "fetch.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

mkdir -p "$DIR" || { echo "fetch.sh: cannot create $DIR" >&2; exit 1; }

md5_of() {
    if command -v md5sum >/dev/null 2>&1; then
        md5sum "$1" | cut -d' ' -f1
    elif command -v md5 >/dev/null 2>&1; then
        md5 -q "$1"
    else
        echo "fetch.sh: neither md5sum nor md5 is installed" >&2
        return 1
    fi
}

download() { # URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 3 --connect-timeout 30 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        echo "fetch.sh: install curl or wget" >&2
        return 1
    fi
}

fetch() { # NAME MD5
    name=$1
    want=${CUTUNE_FETCH_MD5:-$2}
    final="$DIR/$name"
    if [ -f "$final" ] && [ "$(md5_of "$final")" = "$want" ]; then
        echo "fetch.sh: $final is already present and verified"
        return 0
    fi
    tmp=$(mktemp "$DIR/.$name.XXXXXX") || { echo "fetch.sh: cannot write in $DIR" >&2; return 1; }
    trap 'rm -f "$tmp"' EXIT INT TERM HUP
    echo "fetch.sh: downloading $BASE$name"
    if ! download "$BASE$name" "$tmp"; then
        rm -f "$tmp"
        echo "fetch.sh: download failed: $BASE$name (no internet? behind a proxy? set" \
             "https_proxy, or download the file by hand into $DIR)" >&2
        return 1
    fi
    got=$(md5_of "$tmp") || { rm -f "$tmp"; return 1; }
    if [ "$got" != "$want" ]; then
        rm -f "$tmp"
        echo "fetch.sh: MD5 mismatch for $name: expected $want, got $got" \
             "(corrupted or incomplete download; nothing was installed)" >&2
        return 1
    fi
    chmod 644 "$tmp"
    if ! mv -f "$tmp" "$final"; then
        rm -f "$tmp"
        echo "fetch.sh: cannot rename into $final" >&2
        return 1
    fi
    trap - EXIT INT TERM HUP
    sync 2>/dev/null || true
    echo "fetch.sh: $final verified (MD5 $got)"
}

fetch "$NOTOP" "$NOTOP_MD5" || exit 1
if [ "$WANT_FULL" = 1 ]; then
    fetch "$FULL" "$FULL_MD5" || exit 1
fi
exit 0
