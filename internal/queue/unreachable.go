package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// UnreachableError is the one error people need when Redis could not be
// reached at all, whichever call found out.
type UnreachableError struct {
	Addr string // where Redis was looked for, as RedisAddr says it
	Err  error  // why it could not be reached
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("redis at %s is unreachable: %v", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// RedisAddr says where opt looks for Redis, without credentials: its
// host:port (or socket path), the sentinels' master, or the cluster's nodes.
func RedisAddr(opt asynq.RedisConnOpt) string {
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		return o.Addr
	case *asynq.RedisClientOpt:
		return o.Addr
	case asynq.RedisFailoverClientOpt:
		return failoverAddr(o)
	case *asynq.RedisFailoverClientOpt:
		return failoverAddr(*o)
	case asynq.RedisClusterClientOpt:
		return "cluster " + strings.Join(o.Addrs, ",")
	case *asynq.RedisClusterClientOpt:
		return "cluster " + strings.Join(o.Addrs, ",")
	}
	return fmt.Sprintf("(%T)", opt)
}

func failoverAddr(o asynq.RedisFailoverClientOpt) string {
	return fmt.Sprintf("master %s of sentinels %s", o.MasterName, strings.Join(o.SentinelAddrs, ","))
}

// reachTimeout bounds the ping with which Unreachable asks Redis.
const reachTimeout = 2 * time.Second

// Unreachable returns an *UnreachableError when err, from a call to the
// Redis of opt, means that Redis could not be reached; otherwise nil. A
// failed dial in err's chain is the answer itself. A connection that broke
// or timed out mid-call (a read or write error, or EOF) may be a passing
// fault, so Redis is pinged once: if that fails too, short of an error
// reply (Redis answered), it is unreachable. Other errors, a listener's
// among them, give nil. An err that already holds an
// *UnreachableError, and one cut short by ctx, give nil.
func Unreachable(ctx context.Context, opt asynq.RedisConnOpt, err error) *UnreachableError {
	var done *UnreachableError
	if err == nil || ctx.Err() != nil || errors.As(err, &done) {
		return nil
	}
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return &UnreachableError{Addr: RedisAddr(opt), Err: op}
	case errors.As(err, &op) && (op.Op == "read" || op.Op == "write"):
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	default:
		return nil // not from a connection (a listener's error is not Redis's)
	}
	c, cerr := NewRedisClient(opt)
	if cerr != nil {
		return nil
	}
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	perr := c.Ping(pctx).Err()
	var reply redis.Error
	if perr == nil || errors.As(perr, &reply) || ctx.Err() != nil {
		return nil
	}
	return &UnreachableError{Addr: RedisAddr(opt), Err: perr}
}
