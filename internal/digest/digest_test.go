package digest

import (
	"crypto/md5"
	"encoding/hex"
	"testing"
)

// Known answers: RFC 2617's example HA1, and HA1 in streamhub's realm.
func TestHA1(t *testing.T) {
	if got := Hex("Mufasa:testrealm@host.com:Circle Of Life"); got != "939e7578ed9e3c518a452acee763bce9" {
		t.Fatalf("Hex = %s, want RFC 2617's 939e7578ed9e3c518a452acee763bce9", got)
	}
	want := md5.Sum([]byte("abc:streamhub:sk_1"))
	if got := HA1("abc", "sk_1"); hex.EncodeToString(got) != hex.EncodeToString(want[:]) {
		t.Fatalf("HA1 = %x, want MD5(user:streamhub:key) %x", got, want)
	}
}
