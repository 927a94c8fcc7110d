package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestChatUIIsServedWithItsAssets(t *testing.T) {
	s := start(t, "", nil, fast...)
	base := "http://" + s.addr
	resp, page := get(t, base+"/", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("Cache-Control") != "no-cache" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("GET / headers %v", resp.Header)
	}
	if again, _ := get(t, base+"/", map[string]string{"If-None-Match": resp.Header.Get("ETag")}); again.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation answered %d, want 304", again.StatusCode)
	}
	assets := regexp.MustCompile(`/assets/[A-Za-z0-9._-]+\.(js|css)`).FindAllString(page, -1)
	if len(assets) != 2 {
		t.Fatalf("index.html links %v, want one script and one stylesheet", assets)
	}
	for _, a := range assets {
		resp, body := get(t, base+a, nil)
		want := "text/javascript; charset=utf-8"
		if strings.HasSuffix(a, ".css") {
			want = "text/css; charset=utf-8"
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != want || len(body) == 0 {
			t.Fatalf("GET %s: %d %q", a, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Fatalf("GET %s: Cache-Control %q, want immutable", a, resp.Header.Get("Cache-Control"))
		}
	}
	if resp, _ := get(t, base+"/assets/nope.js", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing asset answered %d", resp.StatusCode)
	}
	if resp, body := get(t, base+"/about", nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "curl") {
		t.Fatalf("GET /about: %d, want the curl examples", resp.StatusCode)
	}
}
