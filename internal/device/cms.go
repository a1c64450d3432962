package device

import (
	"encoding/base64"

	"github.com/smallstep/pkcs7"
)

// signAttached returns DER CMS SignedData carrying content, signed by id:
// the form of the enrollment POST body.
func signAttached(id *Identity, content []byte) ([]byte, error) {
	if err := id.valid(); err != nil {
		return nil, err
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	if err := sd.AddSigner(id.Cert, id.Key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, err
	}
	return sd.Finish()
}

// mdmSignature returns the Mdm-Signature header value for body: base64 of a
// detached CMS SignedData signed by id.
func mdmSignature(id *Identity, body []byte) (string, error) {
	if err := id.valid(); err != nil {
		return "", err
	}
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		return "", err
	}
	if err := sd.AddSigner(id.Cert, id.Key, pkcs7.SignerInfoConfig{}); err != nil {
		return "", err
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(der), nil
}
