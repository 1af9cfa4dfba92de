package rtmp

import "net"

// SetTestHookConn makes f run at the start of every connection, until the
// returned function is called (to inject a fault into one connection).
func SetTestHookConn(f func()) (reset func()) {
	h := func(*conn) { f() }
	testHookConn.Store(&h)
	return func() { testHookConn.Store(nil) }
}

// SetTestHookWrapConn makes every connection's net.Conn wrap(nc), until
// the returned function is called (to watch what the server writes).
func SetTestHookWrapConn(wrap func(net.Conn) net.Conn) (reset func()) {
	h := func(c *conn) { c.nc = wrap(c.nc) }
	testHookConn.Store(&h)
	return func() { testHookConn.Store(nil) }
}
