#!/bin/sh
# Debian packages the tests use as independent oracles and peers: tshark (Wireshark's
# dissector), softflowd (a real exporter), nfdump and pmacct (established collectors);
# chromium and its driver (the HTML report opened in a real browser) and poppler-utils
# (pdftoppm/pdftotext read the PDF statements back).
# Installed with apt-get when run as root; otherwise we say what is missing and go on
# (the tests that need a missing tool fail with its name).
set -eu
PACKAGES="tshark softflowd nfdump pmacct chromium chromium-driver poppler-utils fonts-dejavu-core"
missing=""
for tool in tshark softflowd nfcapd nfacctd chromium chromedriver pdftoppm pdftotext; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || [ -x "/usr/bin/$tool" ] || missing="$missing $tool"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
    echo "installed: $PACKAGES"
else
    echo "warning: missing$missing; run 'sudo sh scripts/install-system-deps.sh' (Debian) to install them" >&2
fi
