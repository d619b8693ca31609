#!/usr/bin/env bash
# Installs what clusterctl's build, tests and demo need on a Debian machine.
# Idempotent and quick when everything is present. Needs root for apt-get.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have dot || need+=(graphviz)          # DOT output is rendered by Graphviz in tests
have mmdebstrap || need+=(mmdebstrap) # test-host root filesystem
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have ssh || need+=(openssh-client)
have ssh-keygen || need+=(openssh-client)
have ansible-playbook || need+=(ansible) # the host-prep benchmark's peer
have make || need+=(make)
have git || need+=(git)
have curl || need+=(curl)
have sudo || need+=(sudo) # the sudo decorator's tests run real sudo locally
have gcc || need+=(gcc libc6-dev) # go test -race needs cgo; runc's build links libseccomp

if ((${#need[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing ${need[*]}; run as root (or install them) first" >&2
		exit 1
	fi
	echo "deps: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# A local sshd binary for the transport's loopback tests (they start their
# own sshd with a private config): install it without starting or enabling
# the system's ssh service.
if [ ! -x /usr/sbin/sshd ] && [ "$(id -u)" = 0 ]; then
	echo "deps: installing openssh-server (service left stopped and disabled)" >&2
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null || true
	rm -f /usr/sbin/policy-rc.d
	systemctl disable ssh >/dev/null 2>&1 || true
fi

if ! have go && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
if ! have go; then
	echo "deps: Go is missing: install Go 1.26 (https://go.dev/doc/install) or Debian's golang-go, whose" >&2
	echo "      toolchain switch fetches the version go.mod asks for through the Go module proxy" >&2
	exit 1
fi
echo "deps: ok ($(go version | awk '{print $3}'))" >&2
