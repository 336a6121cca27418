// Command etcd is the etcd server of this control plane's release, built from its Go
// module so that the test API server talks to the version it was released with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
