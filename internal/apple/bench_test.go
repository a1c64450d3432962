package apple

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/micromdm/plist"
)

// benchCheckIn is a 1 KiB TokenUpdate, the size of a typical check-in.
const benchCheckIn = "adde-iphone-tokenupdate.plist"

func BenchmarkPeekMessage(b *testing.B) {
	body := readTestdata(b, filepath.Join("checkin", benchCheckIn))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PeekMessage(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlistXMLDecoder decodes the same body with micromdm/plist, for
// comparison with BenchmarkPeekMessage.
func BenchmarkPlistXMLDecoder(b *testing.B) {
	body := readTestdata(b, filepath.Join("checkin", benchCheckIn))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var m struct{ MessageType, UDID, EnrollmentID, Topic string }
		if err := plist.NewXMLDecoder(bytes.NewReader(body)).Decode(&m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseBearer(b *testing.B) {
	const header = "Bearer mdmauth_at_7QpX2vN9kLr4sT8wYc1Zb6Hd3Jf0Gm5AeU2iO7nKqRxSy4Tv"
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseBearer(header); !ok {
			b.Fatal("refused")
		}
	}
}

func BenchmarkWebChallenge(b *testing.B) {
	const u = "https://mdm.example.com/mdmauth/sign-in/7QpX2vN9kLr4sT8wYc1Zb6Hd3Jf0Gm5A"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := WebChallenge(u); err != nil {
			b.Fatal(err)
		}
	}
}
