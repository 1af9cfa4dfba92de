// Package e2e holds the end-to-end tests (tier 4): the real streamhub
// binary against real clients (ffmpeg, GStreamer, srt-live-transmit,
// headless Chromium with hls.js and mpegts.js), real engines a cluster
// uses (PostgreSQL: engines_test.go) and the abuse suite. They
// need those programs, so they build only with the e2e tag:
//
//	go test -race -tags e2e ./e2e
//
// scripts/test.sh installs the programs and runs them after the other
// tiers.
package e2e
