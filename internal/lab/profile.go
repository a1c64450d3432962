package lab

// profileTemplate is the lab's enrollment profile template: the example
// template with {{BASE}} for the gateway's URL.
const profileTemplate = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>PayloadContent</key>
			<dict>
				<key>Key Type</key>
				<string>RSA</string>
				<key>Key Usage</key>
				<integer>5</integer>
				<key>Keysize</key>
				<integer>2048</integer>
				<key>Subject</key>
				<array>
					<array>
						<array>
							<string>CN</string>
							<string>MDM Identity</string>
						</array>
					</array>
				</array>
				<key>URL</key>
				<string>{{BASE}}/scep</string>
			</dict>
			<key>PayloadIdentifier</key>
			<string>com.example.mdm.scep</string>
			<key>PayloadType</key>
			<string>com.apple.security.scep</string>
			<key>PayloadUUID</key>
			<string>7F6B6A1E-2B65-4C4A-9F8E-2A3E4F5A6B7C</string>
			<key>PayloadVersion</key>
			<integer>1</integer>
		</dict>
		<dict>
			<key>AccessRights</key>
			<integer>8191</integer>
			<key>CheckInURL</key>
			<string>{{BASE}}/mdm/ad</string>
			<key>CheckOutWhenRemoved</key>
			<true/>
			<key>IdentityCertificateUUID</key>
			<string>7F6B6A1E-2B65-4C4A-9F8E-2A3E4F5A6B7C</string>
			<key>PayloadIdentifier</key>
			<string>com.example.mdm.mdm</string>
			<key>PayloadType</key>
			<string>com.apple.mdm</string>
			<key>PayloadUUID</key>
			<string>0C9A1C2D-3E4F-4A5B-8C6D-7E8F9A0B1C2D</string>
			<key>PayloadVersion</key>
			<integer>1</integer>
			<key>ServerCapabilities</key>
			<array>
				<string>com.apple.mdm.per-user-connections</string>
				<string>com.apple.mdm.bootstraptoken</string>
			</array>
			<key>ServerURL</key>
			<string>{{BASE}}/mdm/ad</string>
			<key>SignMessage</key>
			<true/>
			<key>Topic</key>
			<string>com.apple.mgmt.External.00000000-0000-0000-0000-000000000000</string>
		</dict>
	</array>
	<key>PayloadDisplayName</key>
	<string>Enrollment</string>
	<key>PayloadIdentifier</key>
	<string>com.example.mdm.enroll</string>
	<key>PayloadType</key>
	<string>Configuration</string>
	<key>PayloadUUID</key>
	<string>5A4B3C2D-1E0F-4A9B-8C7D-6E5F4A3B2C1D</string>
	<key>PayloadVersion</key>
	<integer>1</integer>
</dict>
</plist>
`
