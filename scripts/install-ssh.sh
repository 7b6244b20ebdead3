#!/usr/bin/env bash
# Install what tests/test_launcher.py needs: Debian's OpenSSH server and client. The tests
# start one `sshd` per network namespace (their own config, host key and a key made for
# the test); nothing here starts or enables the system's ssh service.
#
# Usage: bash scripts/install-ssh.sh      (idempotent; a few seconds on a fresh machine)
# Without apt-get (not Debian), it says so and exits 0: the SSH tests skip, naming why.
set -euo pipefail

if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; then
    /usr/sbin/sshd -V 2>&1 | head -1 || true
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-ssh: no apt-get here; install OpenSSH's server and client by hand, or the SSH tests skip"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# policy-rc.d refuses service starts: the package must not start (or enable) a system sshd.
POLICY=/usr/sbin/policy-rc.d
ADDED=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    ADDED=1
fi
$SUDO apt-get install -y -q --no-install-recommends openssh-server openssh-client
if [ -n "$ADDED" ]; then
    $SUDO rm -f "$POLICY"
fi
/usr/sbin/sshd -V 2>&1 | head -1 || true
