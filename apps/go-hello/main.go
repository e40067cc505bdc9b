// hello is the web server every cell of the matrix builds and probes.
package main

import (
	"fmt"
	"log"
	"net/http"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from basebench")
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}
