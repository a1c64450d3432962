package caddymodule

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/ratelimit"
)

func TestLimitsCaddyfile(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want *Limits
		err  string
	}{
		{"off", `mdm_auth {
			limits off
		}`, &Limits{Off: true}, ""},
		{"block", `mdm_auth {
			limits {
				discovery 100/m burst 40
				discovery_user off
				sign_in 10/30s
				bearer_failures 30/m
				token_per_family 5/m burst 2
				pending_sign_ins 5000
				max_keys 1000
			}
		}`, &Limits{Discovery: "100/m burst 40", DiscoveryUser: "off", SignIn: "10/30s", BearerFailures: "30/m",
			TokenPerFamily: "5/m burst 2", PendingSignIns: 5000, MaxKeys: 1000}, ""},
		{"pending off", `mdm_auth { limits {
			pending_sign_ins off
		}
		}`, &Limits{PendingSignIns: -1}, ""},
		{"bad rate", `mdm_auth { limits {
			discovery 60/d
		}
		}`, nil, "limits discovery"},
		{"unknown", `mdm_auth { limits {
			everything 1/s
		}
		}`, nil, `unknown limits option "everything"`},
		{"no value", `mdm_auth { limits {
			callback
		}
		}`, nil, "argument"},
		{"bad max_keys", `mdm_auth { limits {
			max_keys off
		}
		}`, nil, "max_keys"},
		{"twice", `mdm_auth {
			limits off
			limits off
		}`, nil, "limits given twice"},
		{"limits on", `mdm_auth {
			limits on
		}`, nil, "a block, or off"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.src))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h.Limits, tc.want) {
				t.Fatalf("got %+v, want %+v", h.Limits, tc.want)
			}
		})
	}
}

func TestLimitsBuild(t *testing.T) {
	def := gateway.DefaultLimits()
	if g, err := (*Limits)(nil).build(); err != nil || !reflect.DeepEqual(*g, def) {
		t.Fatalf("unset: %+v, %v; want the defaults", g, err)
	}
	if def.BearerFailures.Enabled() || !def.Discovery.Enabled() || def.PendingSignIns != 100_000 {
		t.Fatalf("defaults: %+v", def)
	}
	if g, err := (&Limits{Off: true}).build(); err != nil || g != nil {
		t.Fatalf("off: %+v, %v", g, err)
	}
	g, err := (&Limits{SignIn: "10/30s burst 3", DiscoveryUser: "off", PendingSignIns: -1, MaxKeys: 77}).build()
	if err != nil {
		t.Fatal(err)
	}
	want := def
	want.SignIn = ratelimit.Rate{Events: 10, Per: 30 * time.Second, Burst: 3}
	want.DiscoveryUser = ratelimit.Rate{}
	want.PendingSignIns = 0
	want.MaxKeys = 77
	if !reflect.DeepEqual(*g, want) {
		t.Fatalf("got %+v\nwant %+v", *g, want)
	}
	if _, err := (&Limits{Callback: "lots"}).build(); err == nil || !strings.Contains(err.Error(), "limits callback") {
		t.Fatalf("bad JSON rate: %v", err)
	}
	if _, err := (&Limits{MaxKeys: -1}).build(); err == nil {
		t.Fatal("negative max_keys accepted")
	}
}

// The README's limits block parses and states the defaults.
func TestREADMELimits(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "### Abuse limits")
	if i < 0 {
		t.Fatal("no Abuse limits section")
	}
	s = s[i:]
	j := strings.Index(s, "```caddy\n")
	k := strings.Index(s[j+9:], "```")
	if j < 0 || k < 0 {
		t.Fatal("no caddy block")
	}
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(s[j+9 : j+9+k])); err != nil {
		t.Fatal(err)
	}
	g, err := h.Limits.build()
	if err != nil {
		t.Fatal(err)
	}
	want := gateway.DefaultLimits()
	want.MaxKeys = gateway.DefaultLimitKeys
	if !reflect.DeepEqual(*g, want) {
		t.Fatalf("README block %+v\ndefaults %+v", *g, want)
	}
}
