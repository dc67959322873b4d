package producer

// murmur2 is the Java Kafka client's hash (org.apache.kafka.common.utils.Utils.murmur2),
// so that key_dispatch puts a key on the partition Kafka Streams and Java
// producers expect.
func murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	n := length / 4
	for i := range n {
		k := uint32(data[i*4]) | uint32(data[i*4+1])<<8 | uint32(data[i*4+2])<<16 | uint32(data[i*4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n*4:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// keyPartition is the Java default partitioner's choice for a keyed record:
// toPositive(murmur2(key)) % numPartitions.
func keyPartition(key []byte, n int) int {
	return int(murmur2(key)&0x7fffffff) % n
}

// pickPartition chooses a record's partition among n by the sink's strategy;
// -1 means the fixed partition does not exist. spread places the records the
// strategy leaves free (random, key_dispatch without a key): a random number
// for a new record, a fixed one for a held record, so that moving it again
// after a crash puts it where the first move did.
func (s *Sink) pickPartition(key []byte, n int, spread uint64) int {
	switch s.cfg.PartitionStrategy {
	case "key_dispatch":
		// An empty key has nothing to hash: it is spread like random.
		if len(key) > 0 {
			return keyPartition(key, n)
		}
	case "fixed":
		if s.cfg.Partition >= n {
			return -1
		}
		return s.cfg.Partition
	}
	return int(spread % uint64(n))
}
