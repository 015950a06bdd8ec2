package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// NewRedisClient returns a go-redis client for opt (as asynq.ParseRedisURI
// returns it) made for enqueueing: it never retries a command, and it lets
// Enqueue see the typed error of each command it sends. Wrap it with
// asynq.NewClientFromRedisClient, and close it after the asynq client.
//
// Both matter to tell a failed enqueue from one whose outcome is unknown:
// go-redis retries a command after a lost connection, so its last error
// (say, connection refused) would hide that an earlier attempt may have
// run; and asynq turns its script's errors into plain text.
func NewRedisClient(opt asynq.RedisConnOpt) (redis.UniversalClient, error) {
	var c redis.UniversalClient
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		c = newSingle(o)
	case *asynq.RedisClientOpt:
		c = newSingle(*o)
	case asynq.RedisFailoverClientOpt:
		c = newFailover(o)
	case *asynq.RedisFailoverClientOpt:
		c = newFailover(*o)
	case asynq.RedisClusterClientOpt:
		c = newCluster(o)
	case *asynq.RedisClusterClientOpt:
		c = newCluster(*o)
	default:
		return nil, fmt.Errorf("redis connection of type %T is not supported", opt)
	}
	c.AddHook(recordHook{})
	return c, nil
}

// noRetries disables go-redis's retries (0 would mean its default, 3).
const noRetries = -1

func newSingle(o asynq.RedisClientOpt) *redis.Client {
	return redis.NewClient(&redis.Options{
		Network: o.Network, Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolSize: o.PoolSize, TLSConfig: o.TLSConfig, MaxRetries: noRetries,
	})
}

func newFailover(o asynq.RedisFailoverClientOpt) *redis.Client {
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: o.MasterName, SentinelAddrs: o.SentinelAddrs,
		SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword,
		Username: o.Username, Password: o.Password, DB: o.DB,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolSize: o.PoolSize, TLSConfig: o.TLSConfig, MaxRetries: noRetries,
	})
}

func newCluster(o asynq.RedisClusterClientOpt) *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: o.Addrs, MaxRedirects: o.MaxRedirects, Username: o.Username, Password: o.Password,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		TLSConfig: o.TLSConfig, MaxRetries: noRetries,
	})
}

// callRecord collects the commands one enqueue sent and the error of the
// last one, as recordHook sees them.
type callRecord struct {
	mu      sync.Mutex
	sent    int    // commands passed to go-redis
	lastCmd string // name of the last one
	lastErr error  // its error, typed
}

type recordKey struct{}

func withRecord(ctx context.Context) (context.Context, *callRecord) {
	rec := &callRecord{}
	return context.WithValue(ctx, recordKey{}, rec), rec
}

func (r *callRecord) last() (sent int, cmd string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent, r.lastCmd, r.lastErr
}

// recordHook notes each command's typed error in the context's callRecord.
type recordHook struct{}

func (recordHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (recordHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (recordHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if rec, ok := ctx.Value(recordKey{}).(*callRecord); ok {
			rec.mu.Lock()
			rec.sent++
			rec.lastCmd, rec.lastErr = cmd.Name(), err
			rec.mu.Unlock()
		}
		return err
	}
}

// notSent reports whether err certainly means the command never reached
// Redis or was refused by it: no connection could be made, the pool had
// none to give, or Redis answered with an error reply.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	if errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) {
		return true
	}
	var reply redis.Error
	return errors.As(err, &reply) && !errors.Is(err, redis.Nil)
}

// FollowsFailover reports whether opt names its Redis through sentinels
// (a redis-sentinel:// URL): a client made from it reaches whichever server
// they call the master, so after a lost connection it is worth waiting for
// them to promote a replica instead of giving up.
func FollowsFailover(opt asynq.RedisConnOpt) bool {
	switch opt.(type) {
	case asynq.RedisFailoverClientOpt, *asynq.RedisFailoverClientOpt:
		return true
	}
	return false
}

// reachablePoll is how often WaitReachable pings.
const reachablePoll = 100 * time.Millisecond

// WaitReachable pings c until Redis answers, ctx is done or timeout passes,
// and returns nil once it answers. Each ping has at most a second.
func WaitReachable(ctx context.Context, c redis.UniversalClient, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(pctx).Err()
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis did not answer within %s: %w", timeout, err)
		case <-time.After(reachablePoll):
		}
	}
}
