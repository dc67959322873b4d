package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// cmdPasswd prints a bcrypt hash of a password for [[broker.auth.users]]
// password_hash, or a users_file line when a user name is given. The
// password is never an argument, so that it stays out of shell history and
// process lists: it is asked for twice on a terminal, else read as the first
// line of standard input.
func cmdPasswd(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost (4-31); each step doubles the CPU time of every check")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: mqkafka passwd [-cost N] [USERNAME]   (prints a bcrypt hash, or USERNAME:hash for users_file)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitInvalidConfig
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return exitInvalidConfig
	}
	user := fs.Arg(0)
	if strings.ContainsAny(user, "\r\n") {
		fmt.Fprintln(stderr, "mqkafka passwd: the user name must be one line")
		return exitInvalidConfig
	}
	pw, err := readPassword(stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mqkafka passwd: %v\n", err)
		return 1
	}
	hash, err := bcrypt.GenerateFromPassword(pw, *cost)
	if err != nil {
		fmt.Fprintf(stderr, "mqkafka passwd: %v\n", err)
		return exitInvalidConfig
	}
	if user != "" {
		fmt.Fprintf(stdout, "%s:%s\n", user, hash)
	} else {
		fmt.Fprintf(stdout, "%s\n", hash)
	}
	return 0
}

func readPassword(in *os.File, prompt io.Writer) ([]byte, error) {
	fd := int(in.Fd())
	if !term.IsTerminal(fd) {
		line, err := bufio.NewReader(in).ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the password: %w", err)
		}
		pw := bytes.TrimRight(line, "\r\n")
		if len(pw) == 0 {
			return nil, errors.New("empty password (give it on standard input)")
		}
		return pw, nil
	}
	fmt.Fprint(prompt, "Password: ")
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	fmt.Fprint(prompt, "Again: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the passwords differ")
	}
	return pw, nil
}
