package device

import (
	"bytes"
	"context"
	"fmt"

	"github.com/micromdm/plist"
)

// Command is an MDM command the server handed to the device.
type Command struct {
	UUID        string
	RequestType string
	Raw         []byte // the command plist as received
}

// Poll reports Status Idle on ch and returns the next command, or nil when
// the server answers 200 with an empty body.
func (d *Device) Poll(ctx context.Context, ch Channel) (*Command, error) {
	return d.report(ctx, ch, "", "Idle")
}

// Acknowledge reports cmd as Acknowledged on ch and returns the next
// command, or nil.
func (d *Device) Acknowledge(ctx context.Context, ch Channel, cmd *Command) (*Command, error) {
	if cmd == nil {
		return nil, fmt.Errorf("%s: Acknowledge: nil command", StepCommand)
	}
	return d.report(ctx, ch, cmd.UUID, "Acknowledged")
}

// Report sends a command result with the given Status (Acknowledged, Error,
// CommandFormatError, NotNow) for commandUUID on ch and returns the next
// command, or nil.
func (d *Device) Report(ctx context.Context, ch Channel, commandUUID, status string) (*Command, error) {
	if commandUUID == "" {
		return nil, fmt.Errorf("%s: Report: empty CommandUUID", StepCommand)
	}
	return d.report(ctx, ch, commandUUID, status)
}

func (d *Device) report(ctx context.Context, ch Channel, commandUUID, status string) (*Command, error) {
	m, err := d.enrollmentKeys(ch)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", StepCommand, err)
	}
	m["Status"] = status
	what := "Status " + status
	if commandUUID != "" {
		m["CommandUUID"] = commandUUID
	}
	body, err := encodeMessage(m)
	if err != nil {
		return nil, err
	}
	resp, err := d.sendMDM(ctx, mdmRequest{step: StepCommand, what: what, ch: ch, body: body})
	if err != nil {
		return nil, err
	}
	cmd, err := ParseCommand(resp)
	if err != nil {
		return nil, err
	}
	if cmd != nil {
		d.log(StepCommand, "received %s %s", cmd.RequestType, cmd.UUID)
	}
	return cmd, nil
}

// ParseCommand reads a command answer: nil for an empty body, otherwise an
// XML plist with a CommandUUID and a Command dictionary holding a
// RequestType.
func ParseCommand(body []byte) (*Command, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] != '<' {
		return nil, deviation(StepCommand, "command is not an XML property list")
	}
	var c struct {
		CommandUUID string
		Command     struct {
			RequestType string
		}
	}
	if err := plist.NewXMLDecoder(bytes.NewReader(body)).Decode(&c); err != nil {
		return nil, &ProtocolError{Step: StepCommand, Reason: "command is not a valid property list", Err: err}
	}
	if c.CommandUUID == "" || c.Command.RequestType == "" {
		return nil, deviation(StepCommand, "command without CommandUUID or Command.RequestType")
	}
	return &Command{UUID: c.CommandUUID, RequestType: c.Command.RequestType, Raw: body}, nil
}
