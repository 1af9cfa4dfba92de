package server

import "testing"

func TestPublisherRungName(t *testing.T) {
	if PublisherRungName(720) != "720p" || !IsPublisherRungName("720p") || !IsPublisherRungName("4320p") {
		t.Fatal("720p, 4320p")
	}
	for _, bad := range []string{"", "p", "0p", "072p", "720", "720px", "x720p", "1234567p", "-1p", "7 0p"} {
		if IsPublisherRungName(bad) {
			t.Errorf("%q taken for a rendition name", bad)
		}
	}
}
