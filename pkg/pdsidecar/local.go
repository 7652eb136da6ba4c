package pdsidecar

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
)

// LocalURL returns a handler that forwards to the model server at base
// (e.g. "http://127.0.0.1:8200"), for Options.Local when the server runs
// in another process. Responses stream through: every write is flushed.
// An unreachable server is answered with 502, in Anthropic's error shape
// on the Messages API and OpenAI's elsewhere.
func LocalURL(base string) (http.Handler, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("local model server %q: want an http(s) base URL", base)
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Header.Del(PrefillerHeader)
			pr.Out.Header.Del(KVSourceHeader)
		},
		FlushInterval: -1,
		Transport:     newTransport(),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client left; nobody reads an answer
			}
			writeError(w, r, http.StatusBadGateway, fmt.Sprintf("local model server: %v", err))
		},
	}, nil
}
