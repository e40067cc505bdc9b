// The web server of the seed post ("Distroless images: why, how and when", 2023): the
// program basebench's comparison started from, built by the post's own Dockerfiles.
package main

import (
	"fmt"
	"net/http"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello, World!")
	})
	http.ListenAndServe(":8080", nil)
}
