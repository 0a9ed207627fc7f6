package client

import (
	"encoding/binary"
	"fmt"
)

// KeyPartition returns the partition, from 0 to partitions-1, that messages with key go
// to, so that every message with one key lands in one partition and stays in order there.
// It is Kafka's default partitioner for keyed records (the murmur2 hash of the key, made
// positive, modulo the partition count), so a key maps to the same partition number as a
// Kafka producer's with the same count.
//
// A [Publisher] writes to one partition ([WithPartition]): to spread keys, open one
// publisher per partition and publish each message on the publisher of its key's
// partition. The count is the stream's ([Conn.OpenStream] or [Conn.StreamInfo]); a stream
// given more partitions later maps most keys to other partitions, as in Kafka.
//
// KeyPartition panics if partitions is below 1.
func KeyPartition(key []byte, partitions int) int {
	if partitions < 1 {
		panic(fmt.Sprintf("client.KeyPartition: %d partitions, want at least 1", partitions))
	}
	return int(murmur2(key)&0x7fffffff) % partitions
}

// murmur2 is the 32-bit MurmurHash2 with Kafka's seed, as Kafka's Utils.murmur2 computes
// it (the four-byte blocks read little-endian, the tail bytes mixed in from the last).
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(data))
	for len(data) >= 4 {
		k := binary.LittleEndian.Uint32(data)
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
