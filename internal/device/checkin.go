package device

import (
	"context"
	"fmt"

	"github.com/micromdm/plist"
)

// enrollmentKeys returns the identifier keys of a message on ch.
func (d *Device) enrollmentKeys(ch Channel) (map[string]any, error) {
	d.mu.Lock()
	ids := d.ids
	d.mu.Unlock()
	m := map[string]any{}
	if ids.UDID != "" {
		m["UDID"] = ids.UDID
	} else if ids.EnrollmentID != "" {
		m["EnrollmentID"] = ids.EnrollmentID
	} else {
		return nil, fmt.Errorf("device is not enrolled")
	}
	if ch == UserChannel {
		if !d.mac {
			return nil, fmt.Errorf("only a Mac has a user channel")
		}
		if ids.UserID != "" {
			m["UserID"] = ids.UserID
			m["UserShortName"] = ids.UserShortName
			m["UserLongName"] = ids.UserLongName
		} else {
			m["EnrollmentUserID"] = ids.EnrollmentUserID
		}
	}
	return m, nil
}

func encodeMessage(m map[string]any) ([]byte, error) {
	return plist.MarshalIndent(m, "\t")
}

// AuthenticateMessage returns the Authenticate check-in body the device
// sends (device channel only).
func (d *Device) AuthenticateMessage() ([]byte, error) {
	m, err := d.enrollmentKeys(DeviceChannel)
	if err != nil {
		return nil, err
	}
	p := d.Profile()
	ids := d.IDs()
	m["MessageType"] = "Authenticate"
	m["Topic"] = p.Topic
	if d.mac {
		m["DeviceName"] = "Mac"
		m["Model"] = d.cfg.Product
		m["ModelName"] = "Mac"
	} else {
		m["ProductName"] = d.cfg.Product
		m["BuildVersion"] = d.cfg.OSVersion
	}
	if ids.SerialNumber != "" {
		m["SerialNumber"] = ids.SerialNumber
	}
	return encodeMessage(m)
}

// Authenticate sends the Authenticate check-in. Only the device channel
// sends it: a Mac user channel starts with TokenUpdate.
func (d *Device) Authenticate(ctx context.Context, ch Channel) error {
	if ch != DeviceChannel {
		return fmt.Errorf("%s: Authenticate is sent on the device channel only; the user channel starts with TokenUpdate", StepCheckIn)
	}
	body, err := d.AuthenticateMessage()
	if err != nil {
		return fmt.Errorf("%s: %w", StepCheckIn, err)
	}
	_, err = d.sendMDM(ctx, mdmRequest{step: StepCheckIn, what: "Authenticate", ch: ch, body: body})
	return err
}

// TokenUpdate sends a TokenUpdate check-in with a fresh random push token,
// the enrollment's PushMagic and Topic.
func (d *Device) TokenUpdate(ctx context.Context, ch Channel) error {
	m, err := d.enrollmentKeys(ch)
	if err != nil {
		return fmt.Errorf("%s: %w", StepCheckIn, err)
	}
	token, err := randomBytes(d.rand, 32)
	if err != nil {
		return err
	}
	d.mu.Lock()
	magic := d.pushMagic
	d.mu.Unlock()
	m["MessageType"] = "TokenUpdate"
	m["Topic"] = d.Profile().Topic
	m["Token"] = token
	m["PushMagic"] = magic
	body, err := encodeMessage(m)
	if err != nil {
		return err
	}
	_, err = d.sendMDM(ctx, mdmRequest{step: StepCheckIn, what: "TokenUpdate", ch: ch, body: body})
	return err
}

// CheckOut sends the CheckOut check-in (device channel). The device cannot
// handle a 401 here: it is reported as a ProtocolError, without signing in.
func (d *Device) CheckOut(ctx context.Context) error {
	m, err := d.enrollmentKeys(DeviceChannel)
	if err != nil {
		return fmt.Errorf("%s: %w", StepCheckIn, err)
	}
	m["MessageType"] = "CheckOut"
	m["Topic"] = d.Profile().Topic
	body, err := encodeMessage(m)
	if err != nil {
		return err
	}
	_, err = d.sendMDM(ctx, mdmRequest{step: StepCheckIn, what: "CheckOut", ch: DeviceChannel, body: body, checkOut: true})
	return err
}
