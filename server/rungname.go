package server

import "strconv"

// A publisher may send its own renditions of a stream (OBS multitrack over
// Enhanced RTMP); its protocol publishes each as the derived stream
// <source>/<height>p, where the ladder would put a rung of that height.

// PublisherRungName is the name of a publisher's rendition of height:
// "720p".
func PublisherRungName(height int) string { return strconv.Itoa(height) + "p" }

// IsPublisherRungName reports whether name has the form of
// PublisherRungName (1 to 5 digits without a leading zero, then "p"):
// such a path is a rung of its parent (its keys, no ladder, no network
// publisher while the parent is live).
func IsPublisherRungName(name string) bool {
	if len(name) < 2 || len(name) > 6 || name[len(name)-1] != 'p' || name[0] == '0' {
		return false
	}
	for _, c := range name[:len(name)-1] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
