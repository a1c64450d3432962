// Command hello prints a fixed line; BuildPackage's test builds it.
package main

import "fmt"

func main() {
	fmt.Println("hello from testenv")
}
