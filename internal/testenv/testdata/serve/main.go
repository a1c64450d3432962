// Command serve answers "ok" on the address in $LISTEN; StartProgram's test runs it.
package main

import (
	"log"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	log.Fatal(http.ListenAndServe(os.Getenv("LISTEN"), nil))
}
