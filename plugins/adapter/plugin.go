package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	adapterv1 "github.com/gatelog/gatelog/plugins/adapter/v1"
	"github.com/gatelog/gatelog/record/decision"
)

// PluginName is the name under which an adapter is served and dispensed.
const PluginName = "adapter"

// Handshake is shared by the daemon and every adapter. The cookie is not a
// security measure; it stops an adapter executable started by hand from
// waiting for a host that isn't there. Bump ProtocolVersion on incompatible
// changes to adapter.proto.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "GATELOG_ADAPTER_PLUGIN",
	MagicCookieValue: "5f0b1c7e-gatelog-adapter-v1",
}

// Plugin is the go-plugin glue for an Adapter: the adapter process serves
// Impl, the host dispenses a *Client.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the adapter being served; unused on the host side.
	Impl Adapter
}

// GRPCServer registers Impl on the adapter process's gRPC server.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("adapter plugin: no implementation to serve")
	}
	adapterv1.RegisterAdapterServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a *Client talking to the adapter over conn.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &Client{rpc: adapterv1.NewAdapterClient(conn), health: grpc_health_v1.NewHealthClient(conn)}, nil
}

// PluginSet is what both sides pass to go-plugin.
func PluginSet(impl Adapter) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &Plugin{Impl: impl}}
}

// Serve runs a as an adapter process: it speaks the handshake on stdout and
// serves gRPC until the host goes away. Call it from main; it returns only
// when serving ends.
func Serve(a Adapter) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(a),
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// Client is an Adapter that talks to an adapter process over gRPC.
type Client struct {
	rpc    adapterv1.AdapterClient
	health grpc_health_v1.HealthClient
}

var _ Adapter = (*Client)(nil)

// Ping asks the adapter process's gRPC health service whether it serves.
// Unlike go-plugin's own Ping it honours ctx, so a hung adapter is noticed.
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.health.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		return err
	}
	if resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("adapter health: %s", resp.GetStatus())
	}
	return nil
}

// Info implements Adapter.
func (c *Client) Info(ctx context.Context) (Info, error) {
	resp, err := c.rpc.Info(ctx, &adapterv1.InfoRequest{})
	if err != nil {
		return Info{}, err
	}
	info := Info{Name: resp.GetName(), Version: resp.GetVersion(), Kinds: resp.GetKinds()}
	if u := resp.GetUnavailable(); u != nil {
		r := responseFromWire(u)
		info.Unavailable = &r
	}
	return info, nil
}

// Configure implements Adapter. An INVALID_ARGUMENT answer wraps ErrBadSettings.
func (c *Client) Configure(ctx context.Context, settings map[string]string) error {
	_, err := c.rpc.Configure(ctx, &adapterv1.ConfigureRequest{Settings: settings})
	if status.Code(err) == codes.InvalidArgument {
		return fmt.Errorf("%w: %s", ErrBadSettings, trimSentinel(status.Convert(err).Message(), ErrBadSettings))
	}
	return err
}

// Translate implements Adapter. An INVALID_ARGUMENT answer wraps
// ErrBadPayload; a request the adapter sends back that is not valid gatelog
// JSON wraps ErrInvalidRequest.
func (c *Client) Translate(ctx context.Context, in Native) (decision.Request, error) {
	resp, err := c.rpc.Translate(ctx, &adapterv1.TranslateRequest{Payload: nativeToWire(in)})
	if status.Code(err) == codes.InvalidArgument {
		return decision.Request{}, fmt.Errorf("%w: %s", ErrBadPayload, trimSentinel(status.Convert(err).Message(), ErrBadPayload))
	}
	if err != nil {
		return decision.Request{}, err
	}
	req, err := decision.ParseRequest(resp.GetRequestJson())
	if err != nil {
		return decision.Request{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return req, nil
}

// Render implements Adapter.
func (c *Client) Render(ctx context.Context, in Native, out Outcome) (Response, error) {
	if err := out.Validate(); err != nil {
		return Response{}, err
	}
	req := &adapterv1.RenderRequest{Payload: nativeToWire(in)}
	if out.Receipt != nil {
		b, err := json.Marshal(out.Receipt)
		if err != nil {
			return Response{}, fmt.Errorf("encode receipt: %w", err)
		}
		req.ReceiptJson = b
	} else {
		req.Failure = &adapterv1.Failure{Kind: failureKindToWire(out.Failure.Kind), Message: out.Failure.Message}
	}
	resp, err := c.rpc.Render(ctx, req)
	if err != nil {
		return Response{}, err
	}
	return responseFromWire(resp.GetResponse()), nil
}

// trimSentinel drops the sentinel's text from the front of a message that
// crossed the wire, since the client wraps the sentinel again.
func trimSentinel(msg string, sentinel error) string {
	return strings.TrimPrefix(msg, sentinel.Error()+": ")
}

// grpcServer serves an Adapter over gRPC inside the adapter process.
type grpcServer struct {
	adapterv1.UnimplementedAdapterServer
	impl Adapter
}

func (s *grpcServer) Info(ctx context.Context, _ *adapterv1.InfoRequest) (*adapterv1.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &adapterv1.InfoResponse{Name: info.Name, Version: info.Version, Kinds: info.Kinds}
	if info.Unavailable != nil {
		resp.Unavailable = responseToWire(*info.Unavailable)
	}
	return resp, nil
}

func (s *grpcServer) Configure(ctx context.Context, req *adapterv1.ConfigureRequest) (*adapterv1.ConfigureResponse, error) {
	if err := s.impl.Configure(ctx, req.GetSettings()); err != nil {
		if errors.Is(err, ErrBadSettings) {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &adapterv1.ConfigureResponse{}, nil
}

func (s *grpcServer) Translate(ctx context.Context, req *adapterv1.TranslateRequest) (*adapterv1.TranslateResponse, error) {
	r, err := s.impl.Translate(ctx, nativeFromWire(req.GetPayload()))
	if err != nil {
		if errors.Is(err, decision.ErrBadRequest) {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, status.Error(codes.Internal, err.Error())
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode request: %v", err)
	}
	return &adapterv1.TranslateResponse{RequestJson: b}, nil
}

func (s *grpcServer) Render(ctx context.Context, req *adapterv1.RenderRequest) (*adapterv1.RenderResponse, error) {
	var out Outcome
	switch {
	case req.GetFailure() != nil && len(req.GetReceiptJson()) == 0:
		out.Failure = &Failure{Kind: failureKindFromWire(req.GetFailure().GetKind()), Message: req.GetFailure().GetMessage()}
	case req.GetFailure() == nil && len(req.GetReceiptJson()) > 0:
		var rc decision.Receipt
		if err := json.Unmarshal(req.GetReceiptJson(), &rc); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "decode receipt: %v", err)
		}
		out.Receipt = &rc
	default:
		return nil, status.Error(codes.InvalidArgument, "render needs exactly one of receipt_json and failure")
	}
	resp, err := s.impl.Render(ctx, nativeFromWire(req.GetPayload()), out)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &adapterv1.RenderResponse{Response: responseToWire(resp)}, nil
}

func headersToWire(h http.Header) map[string]*adapterv1.Values {
	if len(h) == 0 {
		return nil
	}
	m := make(map[string]*adapterv1.Values, len(h))
	for k, v := range h {
		m[k] = &adapterv1.Values{Values: v}
	}
	return m
}

func headersFromWire(m map[string]*adapterv1.Values) http.Header {
	if len(m) == 0 {
		return nil
	}
	h := make(http.Header, len(m))
	for k, v := range m {
		h[k] = v.GetValues()
	}
	return h
}

func nativeToWire(n Native) *adapterv1.Native {
	return &adapterv1.Native{Body: n.Body, Headers: headersToWire(n.Headers)}
}

func nativeFromWire(n *adapterv1.Native) Native {
	return Native{Body: n.GetBody(), Headers: headersFromWire(n.GetHeaders())}
}

func responseToWire(r Response) *adapterv1.Response {
	return &adapterv1.Response{Status: int32(r.Status), Headers: headersToWire(r.Headers), Body: r.Body}
}

func responseFromWire(r *adapterv1.Response) Response {
	return Response{Status: int(r.GetStatus()), Headers: headersFromWire(r.GetHeaders()), Body: r.GetBody()}
}

func failureKindToWire(k FailureKind) adapterv1.Failure_Kind {
	switch k {
	case BadRequest:
		return adapterv1.Failure_KIND_BAD_REQUEST
	case Unauthenticated:
		return adapterv1.Failure_KIND_UNAUTHENTICATED
	case Unavailable:
		return adapterv1.Failure_KIND_UNAVAILABLE
	default:
		return adapterv1.Failure_KIND_INTERNAL
	}
}

func failureKindFromWire(k adapterv1.Failure_Kind) FailureKind {
	switch k {
	case adapterv1.Failure_KIND_BAD_REQUEST:
		return BadRequest
	case adapterv1.Failure_KIND_UNAUTHENTICATED:
		return Unauthenticated
	case adapterv1.Failure_KIND_UNAVAILABLE:
		return Unavailable
	default:
		return Internal
	}
}
