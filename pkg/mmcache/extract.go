package mmcache

import (
	"slices"

	"github.com/openepp/openepp/pkg/request"
)

// AppendItems appends to dst the hashes of the distinct multimodal items
// body references (request.Body.AppendMediaHashes says which and how they
// are told apart), sorted, and returns the extended slice: repeated
// references count once. A text-only prompt costs a scan for media
// markers and nothing else.
func AppendItems(dst []uint64, body *request.Body) []uint64 {
	n := len(dst)
	dst = body.AppendMediaHashes(dst)
	added := dst[n:]
	slices.Sort(added)
	return dst[:n+len(slices.Compact(added))]
}
