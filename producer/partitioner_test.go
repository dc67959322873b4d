package producer

import "testing"

// TestMurmur2MatchesJava uses the vectors of Kafka's own UtilsTest.testMurmur2,
// so key_dispatch agrees with the Java client's default partitioner.
func TestMurmur2MatchesJava(t *testing.T) {
	for in, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := murmur2([]byte(in)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
	// Utils.toPositive(murmur2("foobar")) % 7, as the Java partitioner computes it.
	if got, want := keyPartition([]byte("foobar"), 7), int((-790332482&0x7fffffff)%7); got != want {
		t.Fatalf("keyPartition = %d, want %d", got, want)
	}
}

func BenchmarkMurmur2(b *testing.B) {
	key := []byte("device-0042/client")
	b.ReportAllocs()
	for b.Loop() {
		_ = keyPartition(key, 12)
	}
}
