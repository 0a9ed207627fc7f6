package brokers

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKafka starts a single-node Kafka (listening on loopback only), produces a record, kills and restarts the broker on
// the same ports and data directory, and checks that the record is still there.
func TestKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kafka broker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	k, err := StartKafka(ctx, os.Stderr)
	if err != nil {
		Unavailable(t, "kafka", err)
	}
	dataDir := k.dataDir
	t.Cleanup(func() {
		if err := k.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		if dataDir != "" {
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("data directory %s still exists after Stop (%v)", dataDir, err)
			}
		}
	})
	if k.proc != nil {
		checkLoopbackOnly(t, "kafka", k.proc.Pid())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := "launcher-test"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("kept")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if !k.CanRestart() {
		return
	}
	addr := k.Addr()
	if err := k.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if k.Addr() != addr {
		t.Fatalf("address changed across restart: %s, then %s", addr, k.Addr())
	}
	c, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fs := c.PollFetches(ctx)
	if err := fs.Err0(); err != nil {
		t.Fatalf("consume after restart: %v", err)
	}
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "kept" {
		t.Fatalf("after restart the topic holds %d records, want the one produced before", len(recs))
	}
}

func TestKafkaServerProperties(t *testing.T) {
	p := kafkaServerProperties(9092, 9093, "/data")
	for _, want := range []string{
		"process.roles=broker,controller\n", "node.id=1\n",
		"listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n",
		"controller.quorum.voters=1@127.0.0.1:9093\n", "log.dirs=/data\n",
		"auto.create.topics.enable=false\n", "offsets.topic.replication.factor=1\n",
		"group.initial.rebalance.delay.ms=0\n",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("server.properties lacks %q", want)
		}
	}
	id := kafkaClusterID()
	if len(id) != 22 || id[0] == '-' || strings.ContainsAny(id, "+/=") {
		t.Errorf("cluster id %q is not a Kafka Uuid string", id)
	}
}
