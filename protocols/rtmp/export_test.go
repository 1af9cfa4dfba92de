package rtmp

// SetTestHookConn makes f run at the start of every connection, until the
// returned function is called (to inject a fault into one connection).
func SetTestHookConn(f func()) (reset func()) {
	h := func(*conn) { f() }
	testHookConn.Store(&h)
	return func() { testHookConn.Store(nil) }
}
