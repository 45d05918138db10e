#!/usr/bin/env bash
# Installs the Debian packages simnet's optional steps use, where they are missing and we can
# (libjxl-devtools: the Butteraugli and SSIMULACRA metrics).
# Nothing here is required for the codec or the simulator; tests that need a tool skip without it.
set -u
need=()
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # the MQTT TLS test makes its certificates
command -v butteraugli_main >/dev/null 2>&1 || [ -x /usr/bin/butteraugli_main ] || need+=(libjxl-devtools)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: cannot install ${need[*]} (needs root and apt-get); the tests that use them will skip"
  exit 0
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "note: apt-get could not install ${need[*]}; the tests that use them will skip"
# mosquitto's package starts a system broker on 1883; simnet starts its own brokers on free ports.
exit 0
