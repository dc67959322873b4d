# The README's test command: scripts/test.sh, the suite under -race after installing the Chromium
# and HAProxy its browser and load-balancer tests drive when they are missing.
.PHONY: test
test:
	scripts/test.sh
