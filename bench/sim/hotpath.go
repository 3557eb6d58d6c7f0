package sim

import (
	"context"
	"fmt"
	"time"
)

// HotInstance returns an instance of c, in real time, that holds a token
// valid for an hour and has handed it out once; close releases it.
func HotInstance(c Contender) (inst Instance, close func(), err error) {
	now := time.Now()
	idp := NewIdP(IdPConfig{Lifetime: time.Hour, ClientTimeout: 30 * time.Second}, now)
	seed := idp.Issue(now)
	k, err := c.New(NewEnv(false))
	if err != nil {
		return nil, nil, err
	}
	inst, err = k.Add("token", idp.NewSource(&seed))
	if err != nil {
		k.Close()
		return nil, nil, err
	}
	for i := 0; ; i++ {
		v, err := inst.Token(context.Background())
		if err == nil && v == seed.Value {
			return inst, k.Close, nil
		}
		if i == 1000 {
			k.Close()
			return nil, nil, fmt.Errorf("%s: no token after 1000 tries: %v", c.Name, err)
		}
		time.Sleep(time.Millisecond)
	}
}
