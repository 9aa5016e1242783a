#!/usr/bin/env bash
# Debian libraries WeasyPrint (invoice PDFs) loads at run time: Pango (text layout) and a font.
set -euo pipefail
if ldconfig -p | grep -q 'libpango-1.0.so.0' && ldconfig -p | grep -q 'libpangoft2-1.0.so.0' \
   && fc-list 2>/dev/null | grep -qi dejavu; then
  exit 0
fi
echo "Installing Pango and fonts for invoice PDFs (WeasyPrint)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 fontconfig fonts-dejavu-core >/dev/null
