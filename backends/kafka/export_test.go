package kafka

// ReadAheadEntries returns how many read-ahead entries the Store keeps for a partition of
// stream (see readAhead).
func ReadAheadEntries(s *Store, stream string, partition int) int {
	s.ahead.mu.Lock()
	defer s.ahead.mu.Unlock()
	return len(s.ahead.parts[partKey{s.Topic(stream), int32(partition)}])
}
